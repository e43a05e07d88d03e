"""Ray Data indexing on a local Ray: same catalog as the single-process indexer, and resumable."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from .conftest import real_photo_folder

pytestmark = [pytest.mark.scale, pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # Ray's own


def rows_of(catalog):
    return [(r.id, r.path, r.content_hash, r.size, r.width, r.height) for r in catalog.meta.records()]


def vectors_of(catalog) -> np.ndarray:
    ids = catalog.meta.all_ids()
    return catalog.meta.vectors(ids, catalog.dim)


@pytest.fixture
def photos(sample_photos, tmp_path):
    return real_photo_folder(sample_photos, tmp_path / "photos")


def test_ray_index_equals_single_process_indexer(local_ray, photos, scale_settings):
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder
    from lookalike.catalog.ray_indexer import index_with_ray

    with Catalog("single", scale_settings) as single, Catalog("ray", scale_settings) as distributed:
        expected = index_folder(photos, single)
        seen = []
        report = index_with_ray(photos, distributed, workers=2, batch_size=4, commit_every=5, progress=seen.append)
        assert report.errors == expected.errors == []
        assert (seen[-1].done, seen[-1].total, seen[-1].embedded) == (12, 12, 12)  # what the CLI's bar shows
        assert report.added == expected.added == 12
        assert rows_of(distributed) == rows_of(single)  # same ids, paths, hashes, sizes
        cosines = np.sum(vectors_of(distributed) * vectors_of(single), axis=1)
        assert cosines.min() >= 0.9999
        distributed.check_consistency()
        query = vectors_of(single)[:3]
        assert [[r.record.id for r in row] for row in distributed.search(query, 5)] == \
               [[r.record.id for r in row] for row in single.search(query, 5)]


def test_ray_index_resumes_and_follows_the_indexer_rules(local_ray, photos, scale_settings, sample_photos):
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.ray_indexer import index_with_ray

    with Catalog("resume", scale_settings) as catalog:
        # an interrupted first run: only the top-level photos, given as a list file
        listing = photos.parent / "first.txt"
        listing.write_text("\n".join(sorted(p.name for p in photos.glob("*.jpg"))) + "\n")
        shutil.copy(listing, photos / "first.txt")
        first = index_with_ray(photos / "first.txt", catalog, workers=2, batch_size=4)
        assert (first.added, first.removed) == (6, 0)

        # then the whole folder plus: a byte-identical copy, and one file whose mtime changed
        shutil.copy(sample_photos["china"], photos / "variants" / "china_copy.jpg")
        touched = photos / "flower.jpg"
        os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 60))
        second = index_with_ray(photos, catalog, workers=2, batch_size=4)
        assert second.added == 6  # only the variants were embedded
        assert second.duplicates == 1  # the copy reused china's vector
        assert second.unchanged == 6  # five skipped by size+mtime, flower by its hash
        assert second.errors == []
        assert len(catalog) == 13
        copy = catalog.meta.by_path(str((photos / "variants" / "china_copy.jpg").resolve()))
        original = catalog.meta.by_path(str((photos / "china.jpg").resolve()))
        np.testing.assert_array_equal(catalog.vector(copy.id), catalog.vector(original.id))

        third = index_with_ray(photos, catalog, workers=2)
        assert (third.added, third.duplicates, third.unchanged) == (0, 0, 13)


def test_ray_index_into_qdrant_matches_faiss(local_ray, photos, scale_settings):
    pytest.importorskip("qdrant_client")
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.dedup import find_duplicates
    from lookalike.catalog.stores.qdrant import QdrantStore
    from lookalike.catalog.ray_indexer import index_with_ray

    qdrant_settings = scale_settings.model_copy(update={"store": "qdrant"})
    with Catalog("faiss", scale_settings) as on_faiss, Catalog("qdrant", qdrant_settings) as on_qdrant:
        assert isinstance(on_qdrant.store, QdrantStore)
        index_with_ray(photos, on_faiss, workers=2, batch_size=4)
        index_with_ray(photos, on_qdrant, workers=2, batch_size=4)
        on_qdrant.check_consistency()
        query = vectors_of(on_faiss)
        faiss_hits = on_faiss.search(query, 4)
        qdrant_hits = on_qdrant.search(query, 4)
        assert [[r.record.path for r in row] for row in qdrant_hits] == \
               [[r.record.path for r in row] for row in faiss_hits]
        for a, b in zip(faiss_hits, qdrant_hits):
            assert [r.cosine for r in a] == pytest.approx([r.cosine for r in b], abs=1e-4)
        clusters = lambda c: sorted(sorted(m.path for m in cl.members) for cl in find_duplicates(c, 0.9).clusters)  # noqa: E731
        assert clusters(on_qdrant) == clusters(on_faiss)
        assert clusters(on_faiss)  # the half-size variants cluster with their originals


def test_list_sources_reads_folders_and_list_files(tmp_path, photos):
    from lookalike.catalog.ray_indexer import list_sources
    from lookalike.errors import LookalikeError

    paths, folder = list_sources(photos)
    assert folder == photos.resolve() and len(paths) == 12
    (tmp_path / "list.csv").write_text("path,label\nphotos/china.jpg,x\n# comment\n\n" + f"{photos / 'coffee.jpg'},y\n"
                                       "photos/china.jpg,again\n")
    listed, folder = list_sources(tmp_path / "list.csv")
    assert folder is None
    assert listed == [str((photos / "china.jpg").resolve()), str((photos / "coffee.jpg").resolve())]
    with pytest.raises(LookalikeError):
        list_sources(tmp_path / "missing")


def test_ray_index_equals_single_process_on_dev_photos(local_ray, dev_data, tmp_path, scale_settings):
    """40 real DEV photos (originals and their edited copies), linked, never copied."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder
    from lookalike.catalog.ray_indexer import index_with_ray

    folder = tmp_path / "dev"
    folder.mkdir()
    originals = sorted((dev_data / "pairs" / "originals").iterdir())[:10]
    edited = sorted((dev_data / "pairs" / "edited").iterdir())[:30]
    for i, path in enumerate(originals + edited):
        (folder / f"{i:03d}{path.suffix.lower()}").symlink_to(path)
    with Catalog("single", scale_settings) as single, Catalog("ray", scale_settings) as distributed:
        expected = index_folder(folder, single)
        report = index_with_ray(folder, distributed, workers=2, batch_size=8, commit_every=16)
        assert (report.added, report.duplicates, report.errors) == (expected.added, expected.duplicates, [])
        assert rows_of(distributed) == rows_of(single)
        assert np.sum(vectors_of(distributed) * vectors_of(single), axis=1).min() >= 0.9999


def test_ray_index_keeps_the_catalogs_pooling(local_ray, photos, scale_settings):
    """A catalog made with average pooling, re-indexed on Ray by a process whose default is GeM, gets
    average-pooled vectors from the Ray workers too: they embed with the catalog's recipe."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder
    from lookalike.catalog.ray_indexer import index_with_ray

    assert scale_settings.pooling == "gem"
    avg_settings = scale_settings.model_copy(update={"pooling": "avg"})
    with Catalog("avg-local", avg_settings) as local, Catalog("avg-ray", avg_settings), \
            Catalog("gem-local", scale_settings) as gem:
        index_folder(photos, local)
        index_folder(photos, gem)
    with Catalog("avg-local", scale_settings) as local, Catalog("avg-ray", scale_settings) as distributed, \
            Catalog("gem-local", scale_settings) as gem:
        assert (local.pooling, distributed.pooling, gem.pooling) == ("avg", "avg", "gem")
        index_with_ray(photos, distributed, workers=2, batch_size=4)
        assert rows_of(distributed) == rows_of(local)
        same = np.sum(vectors_of(distributed) * vectors_of(local), axis=1)
        other_pooling = np.sum(vectors_of(gem) * vectors_of(local), axis=1)
        assert same.min() >= 0.9999
        assert other_pooling.min() < 0.999  # the control: GeM vectors are measurably different
