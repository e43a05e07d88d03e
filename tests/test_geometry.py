"""The geometric check (geometry.py) on real photos: fits that line the pixels up, mirrors, the
second look, and the rules that turn its evidence into a tier."""

from __future__ import annotations

import pytest
from PIL import Image, ImageEnhance, ImageOps

from lookalike.geometry import (
    FLOOR,
    GeometryResult,
    decide_tier,
    geometric_check,
    lines_up,
    local_features,
    match_features,
    needs_check,
    rerank_key,
)
from lookalike.similarity import Thresholds, Tier

THRESHOLDS = Thresholds(match=0.85, near_duplicate=0.90, similar=0.80, source="test")


@pytest.fixture(scope="module")
def china(sample_china) -> Image.Image:
    return Image.fromarray(sample_china)


def test_an_edited_copy_lines_up_and_another_photo_does_not(china, sample_flower):
    copy = geometric_check(china, ImageEnhance.Brightness(china.crop((40, 30, 600, 420))).enhance(1.2))
    other = geometric_check(china, Image.fromarray(sample_flower))
    assert lines_up(copy) and copy.inliers >= 30 and not copy.flipped
    assert not lines_up(other) and other.inliers < 12


def test_a_mirrored_copy_is_fitted_against_the_mirror(china):
    mirrored = geometric_check(china, ImageOps.mirror(china))
    assert mirrored.flipped and lines_up(mirrored)
    unmirrored = match_features(local_features(china), local_features(ImageOps.mirror(china)), mirror=False)
    assert not lines_up(unmirrored)  # without the mirror try nothing fits


def test_second_look_never_overrides_a_fit_that_already_lines_up(china):
    copy = china.crop((30, 20, 560, 400))
    first = match_features(local_features(china), local_features(copy), second_look=False)
    assert first == match_features(local_features(china), local_features(copy))


def test_dense_check_tells_copy_from_other_shot(china, dev_data):
    copy = geometric_check(china, ImageEnhance.Contrast(china.resize((320, 213))).enhance(1.3))
    folder = dev_data / "groups" / "ukbench_0000"
    shot = geometric_check(Image.open(folder / "ukbench00000.jpg"), Image.open(folder / "ukbench00001.jpg"))
    assert copy.ncc is not None and copy.ncc > 0.9
    assert shot.ncc is not None and shot.ncc < 0.5 and shot.inliers >= 12  # keypoints alone would say copy


def test_the_check_runs_only_where_it_can_change_the_tier():
    assert not needs_check(1.0, THRESHOLDS, Tier.EXACT)
    assert needs_check(0.95, THRESHOLDS, Tier.NEAR_DUPLICATE) and needs_check(0.82, THRESHOLDS, Tier.SIMILAR)
    assert needs_check(THRESHOLDS.similar - FLOOR / 2, THRESHOLDS, Tier.DIFFERENT)
    assert not needs_check(THRESHOLDS.similar - 2 * FLOOR, THRESHOLDS, Tier.DIFFERENT)


def test_decide_tier_needs_pixels_that_line_up_to_call_a_copy():
    aligned = GeometryResult(inliers=40, keypoints=400, ratio=0.1, flipped=False, ncc=0.95)
    shot = GeometryResult(inliers=40, keypoints=400, ratio=0.1, flipped=False, ncc=0.2)  # keypoints fit, pixels don't
    assert decide_tier(0.86, THRESHOLDS, aligned) is Tier.NEAR_DUPLICATE  # a copy the score alone undersold
    assert decide_tier(0.95, THRESHOLDS, shot) is Tier.SIMILAR  # a close shot the score alone oversold
    assert decide_tier(0.95, THRESHOLDS, None) is Tier.NEAR_DUPLICATE  # no check: the score decides
    assert decide_tier(0.5, THRESHOLDS, aligned) is Tier.DIFFERENT  # far below the lines: not checked


def test_rerank_key_adds_capped_local_evidence():
    assert rerank_key(0.7, None) == rerank_key(0.7, 0) == 0.7  # not fitted, or no inliers: the cosine
    assert rerank_key(0.7, 500) == pytest.approx(1.7)  # capped: one look-alike cannot run away
