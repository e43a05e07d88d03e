"""Indexing a real folder: incremental runs, exact copies without inference, bad files reported."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog.catalog import Catalog
from lookalike.catalog.indexer import index_folder, walk_images


@pytest.fixture
def photo_dir(tmp_path, sample_photos):
    folder = tmp_path / "photos"
    (folder / "sub" / "deeper").mkdir(parents=True)
    for i, (name, path) in enumerate(sorted(sample_photos.items())):
        target = folder / ("sub" if i % 2 else "") / f"{name}.jpg"
        shutil.copy(path, target)
    shutil.copy(sample_photos["china"], folder / "sub" / "deeper" / "china_copy.JPG")  # same bytes
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image")
    (folder / "truncated.jpg").write_bytes(sample_photos["coffee"].read_bytes()[:2000])
    (folder / "readme.txt").write_text("ignored: not an image extension")
    return folder


def test_walk_finds_images_recursively(photo_dir):
    names = sorted(p.name for p in walk_images(photo_dir))
    assert "china_copy.JPG" in names and "readme.txt" not in names
    assert len(names) == 10


def test_index_reports_bad_files_and_reuses_exact_copies(photo_dir, cat_settings, embedder):
    progress = []
    with Catalog("photos", cat_settings) as catalog:
        report = index_folder(photo_dir, catalog, embedder=embedder, progress=progress.append)
        assert report.added == 6
        assert report.duplicates == 1
        bad = {os.path.basename(p): reason for p, reason in report.errors}
        assert set(bad) == {"empty.png", "notes.jpg", "truncated.jpg"}
        assert "empty" in bad["empty.png"]
        assert all(reason for reason in bad.values())
        assert len(catalog) == 7
        assert progress[-1].done == progress[-1].total == 10
        assert set(report.timings) >= {"read_decode", "embed", "write"}
        catalog.check_consistency()
        original = catalog.meta.by_path(str(photo_dir / "china.jpg"))
        copy = catalog.meta.by_path(str(photo_dir / "sub" / "deeper" / "china_copy.JPG"))
        assert original.content_hash == copy.content_hash and original.id != copy.id
        np.testing.assert_array_equal(catalog.vector(original.id), catalog.vector(copy.id))
        # the copy is an exact hit for the original
        top = catalog.search(catalog.vector(original.id)[None], 3, query_hash=original.content_hash)[0]
        assert {r.record.id for r in top[:2]} == {original.id, copy.id}
        assert top[0].verdict == top[1].verdict == "exact"
        assert top[2].verdict != "exact"


def test_incremental_runs(photo_dir, cat_settings, embedder):
    with Catalog("inc", cat_settings) as catalog:
        index_folder(photo_dir, catalog, embedder=embedder)
        ids_before = set(catalog.meta.all_ids().tolist())

        again = index_folder(photo_dir, catalog, embedder=embedder)
        assert (again.added, again.changed, again.duplicates, again.removed) == (0, 0, 0, 0)
        assert again.unchanged == 7 and len(again.errors) == 3
        assert set(catalog.meta.all_ids().tolist()) == ids_before

        os.utime(photo_dir / "flower.jpg", (1_000_000_000, 1_000_000_000))  # same bytes, new mtime
        chelsea = photo_dir / "sub" / "chelsea.jpg"
        with Image.open(chelsea) as im:
            im.crop((0, 0, im.width // 2, im.height // 2)).save(chelsea, quality=90)  # new bytes
        (photo_dir / "rocket.jpg").unlink(missing_ok=True)
        (photo_dir / "sub" / "rocket.jpg").unlink(missing_ok=True)
        (photo_dir / "notes.jpg").unlink()
        third = index_folder(photo_dir, catalog, embedder=embedder)
        assert third.changed == 1
        assert third.removed == 1
        assert third.added == 0
        assert third.unchanged == 5
        assert len(third.errors) == 2
        assert len(catalog) == 6
        catalog.check_consistency()
        assert catalog.meta.by_path(str(photo_dir / "flower.jpg")).mtime == pytest.approx(1_000_000_000)


def test_reopen_keeps_everything(photo_dir, cat_settings, embedder):
    with Catalog("reopen", cat_settings) as catalog:
        index_folder(photo_dir, catalog, embedder=embedder)
        query = catalog.vector(catalog.meta.by_path(str(photo_dir / "astronaut.jpg")).id)
        before = [r.record.id for r in catalog.search(query[None], 5)[0]]
    with Catalog("reopen", cat_settings, create=False) as catalog:
        assert catalog.reconciled == (0, 0)
        assert [r.record.id for r in catalog.search(query[None], 5)[0]] == before


def test_indexing_stores_each_embedded_images_local_features_once(photo_dir, cat_settings, embedder):
    """Search re-ranks from features stored at index time (the same decode as a query), so a search
    never decodes a hit; the byte-identical copy reuses the vector and gets features on first search."""
    from lookalike.catalog.search import stored_features
    from lookalike.geometry import features_for

    settings = cat_settings.model_copy(update={"index_local_features": True})
    with Catalog("features", settings) as catalog:
        report = index_folder(photo_dir, catalog, embedder=embedder)
        embedded = {catalog.meta.by_path(str(p)).id for p in walk_images(photo_dir)
                    if catalog.meta.by_path(str(p)) is not None} - {
            catalog.meta.by_path(str(photo_dir / "sub" / "deeper" / "china_copy.JPG")).id}
        assert report.added == len(embedded) == 6
        assert set(catalog.features.ids().tolist()) == embedded
        china = catalog.meta.by_path(str(photo_dir / "china.jpg"))
        stored = catalog.features.get_many([(china.id, china.content_hash)])[china.id]
        assert stored == features_for(embedder.load(photo_dir / "china.jpg"))  # what search would compute
        assert stored_features(catalog, [china])[0] is not None


def test_indexing_without_local_features_leaves_them_to_the_first_search(photo_dir, cat_settings, embedder):
    settings = cat_settings.model_copy(update={"index_local_features": False})
    with Catalog("lazy", settings) as catalog:
        index_folder(photo_dir, catalog, embedder=embedder)
        assert len(catalog.features.ids()) == 0
