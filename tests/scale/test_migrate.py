"""Export/import between stores: FAISS -> folder -> Qdrant -> folder -> FAISS keeps every answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import real_photo_folder

pytestmark = [pytest.mark.scale, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def answers(catalog, queries: np.ndarray, k: int = 5):
    return [[(r.record.path, round(r.cosine, 4)) for r in row] for row in catalog.search(queries, k)]


@pytest.fixture
def source_catalog(sample_photos, tmp_path, scale_settings):
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder

    catalog = Catalog("source", scale_settings)
    index_folder(real_photo_folder(sample_photos, tmp_path / "photos"), catalog)
    yield catalog
    catalog.close()


def test_round_trip_faiss_qdrant_faiss(source_catalog, tmp_path, scale_settings):
    pytest.importorskip("qdrant_client")
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.stores.faiss import FaissStore
    from lookalike.catalog.stores.qdrant import QdrantStore
    from lookalike.catalog.transfer import export_catalog, import_catalog, read_manifest

    queries = source_catalog.meta.vectors(source_catalog.meta.all_ids(), source_catalog.dim)
    expected = answers(source_catalog, queries)

    first = export_catalog(source_catalog, tmp_path / "export1")
    manifest = read_manifest(tmp_path / "export1")
    assert (manifest["count"], manifest["dim"], manifest["source_store"]) == (12, 1280, "faiss")
    assert import_catalog(tmp_path / "export1", "on-qdrant", scale_settings, store="qdrant").count == 12

    qdrant_settings = scale_settings.model_copy(update={"store": "qdrant"})
    with Catalog("on-qdrant", qdrant_settings) as on_qdrant:
        assert isinstance(on_qdrant.store, QdrantStore)
        assert answers(on_qdrant, queries) == expected
        on_qdrant.check_consistency()
        export_catalog(on_qdrant, tmp_path / "export2", source="store")  # vectors read back from Qdrant

    report = import_catalog(tmp_path / "export2", "back-on-faiss", scale_settings)
    assert (report.count, report.id_map_changed) == (12, 0)
    with Catalog("back-on-faiss", scale_settings) as back:
        assert isinstance(back.store, FaissStore)
        assert answers(back, queries) == expected
        assert [r.to_dict() | {"added_at": 0} for r in back.meta.records()] == \
               [r.to_dict() | {"added_at": 0} for r in source_catalog.meta.records()]
    assert first.count == 12


@pytest.mark.parametrize("store, module", [("qdrant", "qdrant_client"), ("milvus", "milvus_lite")])
def test_switching_store_in_place_backfills_from_sqlite(store, module, source_catalog, scale_settings):
    pytest.importorskip(module)
    from lookalike.catalog.catalog import Catalog

    queries = source_catalog.meta.vectors(source_catalog.meta.all_ids()[:4], source_catalog.dim)
    expected = answers(source_catalog, queries)
    source_catalog.close()
    with Catalog("source", scale_settings.model_copy(update={"store": store})) as switched:
        assert type(switched.store).__name__.lower().startswith(store)
        assert switched.reconciled == (12, 0)  # every committed vector copied into the new store
        assert answers(switched, queries) == expected


def test_import_refuses_damaged_exports_and_full_catalogs(source_catalog, tmp_path, scale_settings):
    from lookalike.errors import ConflictError, LookalikeError
    from lookalike.catalog.transfer import export_catalog, import_catalog

    source_catalog.remove([1, 2])
    report = export_catalog(source_catalog, tmp_path / "export")
    assert report.count == 10
    renumbered = import_catalog(tmp_path / "export", "copy", scale_settings)
    assert renumbered.id_map_changed == 10  # the source's ids 3..12 became 1..10
    with pytest.raises(ConflictError):
        import_catalog(tmp_path / "export", "copy", scale_settings)
    with pytest.raises(ConflictError):
        export_catalog(source_catalog, tmp_path / "export")  # never overwrites silently
    lines = (tmp_path / "export" / "metadata.jsonl").read_text().splitlines()
    (tmp_path / "export" / "metadata.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(LookalikeError, match="checksum"):
        import_catalog(tmp_path / "export", "broken", scale_settings)
    (tmp_path / "export" / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(LookalikeError, match="unsupported export"):
        import_catalog(tmp_path / "export", "broken", scale_settings)


@pytest.fixture
def cli_env(scale_settings, monkeypatch):
    from lookalike.config import get_settings

    monkeypatch.setenv("LOOKALIKE_CACHE_DIR", str(scale_settings.cache_dir))
    monkeypatch.setenv("LOOKALIKE_WEIGHTS_DIRS", ":".join(str(p) for p in scale_settings.weights_dirs))
    monkeypatch.setenv("LOOKALIKE_ALLOW_HUB_DOWNLOAD", "false")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(scale_settings.data_dir))
    monkeypatch.setenv("LOOKALIKE_CONFIG", "none")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_catalog_export_import(source_catalog, tmp_path, cli_env):
    from typer.testing import CliRunner

    from lookalike.catalog.catalog import Catalog
    from lookalike.cli.main import app
    from lookalike.config import get_settings

    source_catalog.close()
    runner = CliRunner()
    exported = runner.invoke(app, ["catalog", "export", "source", str(tmp_path / "out"), "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["count"] == 12
    imported = runner.invoke(app, ["catalog", "import", str(tmp_path / "out"), "copy", "--store", "faiss"])
    assert imported.exit_code == 0, imported.output
    assert "imported 12 images into copy" in imported.output
    with Catalog("copy", get_settings(), create=False) as copy:
        assert len(copy) == 12
    missing = runner.invoke(app, ["catalog", "export", "nope", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
