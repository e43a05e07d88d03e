"""Safe decoding: every mode ends as upright 8-bit RGB; limits are enforced from the header."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import BadImageError, ImageTooLargeError
from lookalike.imaging import ImageLimits, Preprocessing, decode, load_image, open_checked, same_decode

from .conftest import jpeg_bytes, png_bytes


def test_exif_orientation_is_applied(sample_china):
    upright = Image.fromarray(sample_china)
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways (90 deg counter-clockwise) ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with EXIF orientation 6: "rotate 90 deg clockwise to view"
    buffer = io.BytesIO()
    rotated.save(buffer, "JPEG", quality=95, exif=exif)
    decoded = decode(buffer.getvalue())
    assert decoded.size == upright.size
    diff = np.abs(np.asarray(decoded, dtype=np.int16) - np.asarray(upright, dtype=np.int16)).mean()
    assert diff < 6


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    rgb = decode(png_bytes(rgba))
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_becomes_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    assert decode(buffer.getvalue()).getpixel((1, 1)) == (255, 255, 255)


def test_16bit_png_is_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    source = Image.fromarray(ramp)
    assert source.mode.startswith("I;16")
    rgb = decode(png_bytes(source))
    pixels = np.asarray(rgb)
    assert rgb.mode == "RGB" and pixels.min() == 0 and pixels.max() >= 250
    assert len(np.unique(pixels[..., 0])) > 100  # a real ramp, not a saturated blob


def test_cmyk_and_grayscale_jpeg_become_rgb(sample_flower):
    cmyk = Image.fromarray(sample_flower).convert("CMYK")
    gray = Image.fromarray(sample_flower).convert("L")
    for image in (cmyk, gray):
        assert decode(jpeg_bytes(image)).mode == "RGB"


@pytest.mark.parametrize(
    "payload, message",
    [(b"", "empty"), (b"hello, not an image", "not an image"), (b"<html><body>x</body></html>", "not an image")],
)
def test_non_images_are_rejected_clearly(payload, message):
    with pytest.raises(BadImageError, match=message):
        decode(payload)


def test_truncated_jpeg_is_rejected(sample_china):
    data = jpeg_bytes(sample_china)
    with pytest.raises(BadImageError, match="truncated|corrupt"):
        decode(data[: len(data) // 2])


def test_pixel_limit_is_checked_before_decoding():
    huge = Image.new("L", (20000, 20000))  # 400 MP declared; PNG compresses it to a tiny file
    data = png_bytes(huge)
    assert len(data) < 2_000_000
    with pytest.raises(ImageTooLargeError, match="pixels"):
        open_checked(data, ImageLimits(max_pixels=50_000_000))


def test_byte_limit(sample_china):
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_image(jpeg_bytes(sample_china), ImageLimits(max_bytes=1000))


def test_jpeg_draft_keeps_enough_pixels_for_the_model(sample_china):
    big = Image.fromarray(sample_china).resize((2560, 1708))
    decoded = decode(jpeg_bytes(big), draft_side=224)
    assert min(decoded.size) >= 224 and decoded.size[0] < 2560  # reduced, but never below the input


@pytest.mark.parametrize("size", [(2560, 1708), (960, 640), (720, 480), (427, 285)])
def test_same_decode_says_exactly_when_two_draft_sides_give_the_same_pixels(sample_china, size):
    """Compare feeds its copy detector the similarity model's decode when ``same_decode`` says so:
    it must be true exactly when both decodes are pixel for pixel equal."""
    data = jpeg_bytes(Image.fromarray(sample_china).resize(size))
    for a, b in ((224, 256), (224, 288), (None, 256), (256, 256)):
        equal = np.array_equal(np.asarray(decode(data, draft_side=a)), np.asarray(decode(data, draft_side=b)))
        assert same_decode(data, a, b) == equal, (size, a, b)
    if size == (720, 480):  # 224 decodes at half scale (240 px), 256 needs the full 480
        assert not same_decode(data, 224, 256)
    png = png_bytes(Image.fromarray(sample_china))
    assert same_decode(png, 224, 256)  # no draft outside JPEG: one decode serves both


def test_preprocessing_shapes_and_normalization(sample_china):
    pre = Preprocessing(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", 0.875, "crop")
    batch = pre.to_array([Image.fromarray(sample_china)] * 2)
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    assert -1.01 <= batch.min() and batch.max() <= 1.01
    resized = pre.with_mode("resize").to_array([Image.fromarray(sample_china)])
    assert resized.shape == (1, 3, 224, 224) and not np.allclose(resized[0], batch[0])


def test_importing_lookalike_leaves_pillows_bomb_guard_alone():
    """A library must not switch off Pillow's decompression-bomb guard in the program importing it."""
    import subprocess
    import sys

    code = ("from PIL import Image; before = Image.MAX_IMAGE_PIXELS; "
            "import lookalike, lookalike.imaging, lookalike.embed, lookalike.api.app, lookalike.cli; "
            "assert Image.MAX_IMAGE_PIXELS == before and before is not None, Image.MAX_IMAGE_PIXELS; print('kept')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kept"


def test_an_image_past_pillows_guard_is_too_large_not_corrupt(monkeypatch):
    """Pillow's guard, when stricter than max_pixels, answers like ours: ImageTooLargeError (413)."""
    import io

    from PIL import Image

    from lookalike.errors import ImageTooLargeError
    from lookalike.imaging import open_checked

    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), "white").save(buffer, "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 90,000 px > 2 x 100: Pillow raises
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        open_checked(buffer.getvalue())
