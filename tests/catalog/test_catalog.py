"""Catalog naming, model pinning, reconciliation of the index with SQLite, uploads, thumbnails."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog.ingest import add_uploads
from lookalike.catalog.media import thumbnail
from lookalike.catalog.catalog import Catalog, BadCatalogNameError, check_name, list_catalogs
from lookalike.catalog.metadata import NewImage
from lookalike.errors import ConflictError, NotFoundError


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".hidden", "", "x" * 65, "a b", "naïve", "a\\b", "c:"])
def test_bad_names_are_refused(name, cat_settings):
    with pytest.raises(BadCatalogNameError):
        check_name(name)
    with pytest.raises(BadCatalogNameError):
        Catalog(name, cat_settings)
    assert not (cat_settings.data_dir / "etc").exists()


def test_missing_catalog_is_not_created(cat_settings):
    with pytest.raises(NotFoundError):
        Catalog("nothing-here", cat_settings, create=False)
    assert list_catalogs(cat_settings) == []


def test_model_is_pinned(cat_settings):
    Catalog("pinned", cat_settings).close()
    with pytest.raises(ConflictError):
        Catalog("pinned", cat_settings, model="resnet18")
    assert list_catalogs(cat_settings)[0]["model"] == "tf_efficientnet_lite0"


def _unit(n, dim, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(n, start=0):
    return [NewImage(None, f"f{i}.jpg", f"hash{i}", 10, 4, 3, None) for i in range(start, start + n)]


def test_reconcile_rebuilds_the_index_from_committed_rows(cat_settings):
    catalog = Catalog("recon", cat_settings)
    vectors = _unit(50, catalog.dim)
    ids = catalog.add_embedded(_rows(50), vectors)
    catalog.flush()
    more = catalog.add_embedded(_rows(5), _unit(5, catalog.dim, seed=1))  # committed, index not saved
    catalog.meta.delete(ids[:3])  # rows deleted behind the index's back (like a crash mid-remove)
    catalog.meta.close()  # "kill": no flush

    reopened = Catalog("recon", cat_settings)
    assert reopened.reconciled == (5, 3)
    reopened.check_consistency()
    assert len(reopened.store) == 52
    assert reopened.search(vectors[10:11], 1)[0][0].record.id == ids[10]
    assert set(more) <= set(reopened.store.ids().tolist())
    reopened.close()


def test_corrupt_index_file_is_rebuilt(cat_settings):
    catalog = Catalog("corrupt", cat_settings)
    catalog.add_embedded(_rows(10), _unit(10, catalog.dim))
    catalog.close()
    (catalog.root / "vectors.faiss").write_bytes(b"garbage")
    with Catalog("corrupt", cat_settings) as again:
        assert len(again.store) == 10
        again.check_consistency()


def test_large_catalog_switches_index_type(cat_settings):
    settings = cat_settings.model_copy(update={"catalog_flat_max": 300, "catalog_index_factory": "IVF4,Flat",
                                              "catalog_search_params": "nprobe=4"})
    catalog = Catalog("big", settings)
    vectors = _unit(400, catalog.dim)
    ids = catalog.add_embedded(_rows(400), vectors)
    catalog.flush()
    assert catalog.factory == "IVF4,Flat"
    catalog.close()
    with Catalog("big", settings) as again:
        assert again.factory == "IVF4,Flat" and type(again.store.inner).__name__ == "IndexIVFFlat"
        assert again.search(vectors[7:8], 1)[0][0].record.id == ids[7]
        again.remove(ids[:2])
        again.check_consistency()
    (catalog.root / "vectors.faiss").write_bytes(b"torn")  # lost index: retrained from the SQLite vectors
    with Catalog("big", settings) as rebuilt:
        assert rebuilt.factory == "IVF4,Flat" and len(rebuilt.store) == 398
        rebuilt.check_consistency()


def test_uploads_thumbnails_and_removal(cat_settings, sample_photos, embedder):
    from lookalike.embed import EmbedderPool

    pool = EmbedderPool(cat_settings)
    pool._items[pool.key(None, None)] = embedder  # reuse the session's loaded model
    catalog = Catalog("uploads", cat_settings)
    data = sample_photos["chelsea"].read_bytes()
    added, errors = add_uploads(catalog, [("cat.jpg", data), ("cat-again.jpg", data), ("bad.png", b"nope")], pool)
    assert [a["status"] for a in added] == ["added", "exists"]
    assert added[0]["id"] == added[1]["id"]
    assert errors and errors[0]["filename"] == "bad.png"
    record = catalog.get(added[0]["id"])
    assert (record.width, record.height) == (451, 300)
    thumb = thumbnail(catalog, record.id, 64)
    assert thumb.is_file() and thumb.stat().st_size > 0
    assert thumbnail(catalog, record.id, 64) == thumb
    assert catalog.remove([record.id]) == 1
    assert not thumb.exists()
    with pytest.raises(NotFoundError):
        catalog.get(record.id)
    assert list((catalog.root / "files").iterdir()) == []
    catalog.close()


def test_default_large_index_is_compressed_hnsw_with_exact_rerank_and_persistent_deletes(cat_settings):
    settings = cat_settings.model_copy(update={"catalog_flat_max": 300})
    catalog = Catalog("hnsw", settings)
    vectors = _unit(400, catalog.dim, seed=3)
    ids = catalog.add_embedded(_rows(400), vectors)
    catalog.flush()
    assert catalog.factory == settings.catalog_index_factory == "PCA96,HNSW32"
    assert (catalog.root / "vectors.f32").is_file()  # the full vectors the re-rank reads
    hit = catalog.search(vectors[7:8], 1)[0][0]
    assert hit.record.id == ids[7] and hit.cosine == pytest.approx(1.0, abs=1e-5)  # exact, not the PCA's score
    catalog.remove(ids[:5])  # HNSW cannot delete: tombstones, saved next to the index
    catalog.close()
    with Catalog("hnsw", settings) as again:
        assert again.factory == "PCA96,HNSW32" and again.reconciled == (0, 0)
        assert len(again.store) == 395
        again.check_consistency()
        assert again.search(vectors[0:1], 1)[0][0].record.id != ids[0]
        assert again.search(vectors[9:10], 1)[0][0].record.id == ids[9]
        more = _unit(3, catalog.dim, seed=4)
        new_ids = again.add_embedded(_rows(3, start=400), more)  # written to vectors.f32 as well
        assert again.search(more[1:2], 1)[0][0].record.id == new_ids[1]
    (catalog.root / "vectors.f32").unlink()  # a lost derived file is rebuilt from SQLite
    with Catalog("hnsw", settings) as rebuilt:
        hit = rebuilt.search(vectors[9:10], 1)[0][0]
        assert hit.record.id == ids[9] and hit.cosine == pytest.approx(1.0, abs=1e-5)


def test_catalog_keeps_the_pooling_it_was_built_with(cat_settings, sample_photos):
    """A catalog records its pooling; opened under another default it still embeds queries its own way."""
    from lookalike.catalog.catalog import Catalog

    with Catalog("pooled", cat_settings.model_copy(update={"pooling": "avg"})) as cat:
        assert cat.meta.info()["pooling"] == "avg"
    with Catalog("pooled", cat_settings.model_copy(update={"pooling": "gem"}), create=False) as cat:
        assert cat.pooling == "avg"
        embedder = cat.embedder()
        direct = embedder.encode(sample_photos["china"])
    from lookalike.embed import create_embedder

    avg = create_embedder(cat_settings.default_model, pooling="avg", settings=cat_settings).encode(sample_photos["china"])
    assert float(direct @ avg) > 0.9999
