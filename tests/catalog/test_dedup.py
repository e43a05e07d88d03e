"""Duplicate clusters on real photos: exact copies are their own tier, edited copies cluster, keep = largest."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from lookalike.catalog.catalog import Catalog
from lookalike.catalog.dedup import find_duplicates
from lookalike.catalog.indexer import index_folder

from ..conftest import jpeg_bytes


@pytest.fixture
def dup_catalog(tmp_path, sample_photos, sample_flower, cat_settings, embedder):
    folder = tmp_path / "dups"
    folder.mkdir()
    for name, path in sample_photos.items():
        shutil.copy(path, folder / f"{name}.jpg")
    shutil.copy(sample_photos["rocket"], folder / "rocket_again.jpg")
    shutil.copy(sample_photos["rocket"], folder / "rocket_third.jpg")
    small = Image.fromarray(sample_flower).resize((320, 214))
    (folder / "flower_small.jpg").write_bytes(jpeg_bytes(small, quality=60))
    (folder / "flower_gray.jpg").write_bytes(jpeg_bytes(Image.fromarray(sample_flower).convert("L").convert("RGB")))
    catalog = Catalog("dups", cat_settings)
    index_folder(folder, catalog, embedder=embedder)
    yield catalog
    catalog.close()


def test_clusters_tiers_and_keep(dup_catalog, tmp_path):
    report = find_duplicates(dup_catalog, threshold=0.9)
    by_names = {frozenset(m.filename for m in c.members): c for c in report.clusters}
    assert set(by_names) == {frozenset({"rocket.jpg", "rocket_again.jpg", "rocket_third.jpg"}),
                             frozenset({"flower.jpg", "flower_small.jpg", "flower_gray.jpg"})}
    rockets = by_names[frozenset({"rocket.jpg", "rocket_again.jpg", "rocket_third.jpg"})]
    assert rockets.tier == "exact"
    assert all(p.verdict == "exact" for p in rockets.pairs) and len(rockets.pairs) == 3
    flowers = by_names[frozenset({"flower.jpg", "flower_small.jpg", "flower_gray.jpg"})]
    assert flowers.tier == "near_duplicate"
    assert dup_catalog.get(flowers.keep).width == 640  # the full-size original, not the small copy
    assert dup_catalog.get(flowers.keep).filename in ("flower.jpg", "flower_gray.jpg")
    assert all(0.9 <= p.score <= 1.0 for p in flowers.pairs)
    data = report.to_dict()
    assert data["threshold"] == 0.9 and len(data["clusters"]) == 2


def test_strict_threshold_keeps_only_exact_copies(dup_catalog):
    report = find_duplicates(dup_catalog, threshold=0.9999)
    assert [c.tier for c in report.clusters] == ["exact"]


def test_empty_and_bad_threshold(cat_settings):
    with Catalog("empty", cat_settings) as catalog:
        assert find_duplicates(catalog, 0.9).clusters == []
        with pytest.raises(Exception) as info:
            find_duplicates(catalog, 1.5)
        assert getattr(info.value, "status", None) == 422
