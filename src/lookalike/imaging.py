"""Bytes -> upright RGB image -> model input array.

Decoding takes files from strangers, so limits are checked from the header before pixels are
decoded (bytes, pixel count, frame count: what imgproxy and thumbor enforce), and every mode
Pillow can open ends as 8-bit RGB the same way (alpha composited on white, 16-bit scaled, CMYK
converted, EXIF orientation applied). Preprocessing parameters come from the model's spec,
never from call sites.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.errors import BadImageError, ImageTooLargeError

# Our own pixel limit (``max_pixels``) is checked from the header before any decoding. Pillow's
# global guard (``Image.MAX_IMAGE_PIXELS``) is left as the host program set it: a library must not
# switch off a safety check for every program that imports it. An image past Pillow's guard is
# reported like one past ours (``ImageTooLargeError``), so the stricter of the two wins.

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"})

# Pillow can open ~40 formats, some through external interpreters (EPS -> Ghostscript) or rarely
# exercised decoders; a service that takes files from strangers accepts only the photo formats.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"})


@dataclass(frozen=True)
class ImageLimits:
    """Upper bounds checked before full decoding."""

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_frames: int = 1000
    min_side: int = 4  # a 1x1 tracking pixel carries nothing to compare
    max_aspect: float = 50.0  # 100000x1 strips would blow up the crop transform's resize

    @classmethod
    def from_settings(cls, settings) -> "ImageLimits":  # noqa: ANN001 - avoid importing config here
        return cls(settings.max_upload_bytes, settings.max_pixels, settings.max_frames)


DEFAULT_LIMITS = ImageLimits()
# limit errors name the setting that raises the limit
_BYTES_SETTING = " (setting max_upload_bytes, env LOOKALIKE_MAX_UPLOAD_BYTES)"
_PIXELS_SETTING = " (setting max_pixels, env LOOKALIKE_MAX_PIXELS)"


@dataclass(frozen=True)
class Preprocessing:
    """How one model wants its input; lives in the model spec so transforms cannot drift."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    crop_pct: float = 0.875
    mode: Literal["resize", "crop"] = "resize"

    def with_size(self, size: int) -> "Preprocessing":
        return Preprocessing(size, self.mean, self.std, self.interpolation, self.crop_pct, self.mode)

    def with_mode(self, mode: Literal["resize", "crop"]) -> "Preprocessing":
        return Preprocessing(self.input_size, self.mean, self.std, self.interpolation, self.crop_pct, mode)

    @property
    def decode_side(self) -> int:
        """Smallest short side the decoder must deliver before the final resize."""
        if self.mode == "crop":
            return int(np.ceil(self.input_size / self.crop_pct))
        return self.input_size

    def to_array(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images -> float32 NCHW batch, normalized."""
        batch = np.empty((len(images), 3, self.input_size, self.input_size), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1) * 255.0
        inv_std = 1.0 / (np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1) * 255.0)
        for i, image in enumerate(images):
            pixels = np.asarray(self.resize(image), dtype=np.float32).transpose(2, 0, 1)
            np.subtract(pixels, mean, out=batch[i])
            batch[i] *= inv_std
        return batch

    def resize(self, image: Image.Image) -> Image.Image:
        resample = Image.Resampling.BICUBIC if self.interpolation == "bicubic" else Image.Resampling.BILINEAR
        size = self.input_size
        if self.mode == "resize":
            return image.resize((size, size), resample, reducing_gap=None)
        # timm eval transform: short side to size / crop_pct, then a centre crop of size x size
        scale_side = self.decode_side
        w, h = image.size
        if w <= h:
            new_w, new_h = scale_side, max(1, round(h * scale_side / w))
        else:
            new_w, new_h = max(1, round(w * scale_side / h)), scale_side
        resized = image.resize((new_w, new_h), resample)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return resized.crop((left, top, left + size, top + size))


def read_source_bytes(source: ImageSource, limits: ImageLimits = DEFAULT_LIMITS) -> bytes | None:
    """Raw bytes of a path or bytes-like source (None for in-memory images)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise BadImageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if size > limits.max_bytes:
            raise ImageTooLargeError(f"{path.name} is {size} bytes; the limit is {limits.max_bytes}{_BYTES_SETTING}")
        data = path.read_bytes()
    else:
        return None
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"upload is {len(data)} bytes; the limit is {limits.max_bytes}{_BYTES_SETTING}")
    return data


def content_hash(data: bytes) -> str:
    """Identity of a file's bytes (exact-copy detection, caches)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def open_checked(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Open lazily and check size and frames from the header; no pixel is decoded yet."""
    if not data:
        raise BadImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image Pillow can read (unknown or corrupt format)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image refused by Pillow's decompression-bomb guard ({exc}); lower "
                                 f"max_pixels or raise PIL.Image.MAX_IMAGE_PIXELS in your program") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
            ZeroDivisionError) as exc:
        raise BadImageError(f"corrupt image header: {exc}") from exc
    if image.format not in ACCEPTED_FORMATS:
        accepted = ", ".join(sorted(ACCEPTED_FORMATS))
        raise BadImageError(f"{image.format} files are not accepted; send one of {accepted}",
                            code="unsupported_format")
    width, height = image.size
    if width < 1 or height < 1:
        raise BadImageError(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}{_PIXELS_SETTING}"
        )
    if min(width, height) < limits.min_side:
        raise BadImageError(f"image is {width}x{height}; the short side must be at least {limits.min_side} px",
                            code="image_too_small")
    if max(width, height) > limits.max_aspect * min(width, height):
        raise BadImageError(f"image is {width}x{height}; the aspect ratio may be at most {limits.max_aspect:g}:1",
                            code="bad_aspect_ratio")
    try:
        frames = getattr(image, "n_frames", 1)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError) as exc:
        raise BadImageError(f"corrupt animation: {exc}") from exc
    if frames > limits.max_frames:
        raise ImageTooLargeError(f"animation has {frames} frames; the limit is {limits.max_frames}"
                                 " (setting max_frames, env LOOKALIKE_MAX_FRAMES)")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, alpha composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        if image.mode.startswith("I;16") or (lo >= 0 and hi > 255):
            top = 65535.0 if image.mode.startswith("I;16") or hi > 255 else 255.0
            array = array / top * 255.0
        gray = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode(data: bytes, limits: ImageLimits = DEFAULT_LIMITS, *, draft_side: int | None = None) -> Image.Image:
    """Bytes -> upright RGB image.

    ``draft_side`` lets JPEG decode at a reduced DCT scale (Pillow ``draft``) as long as the
    short side stays >= ``draft_side``: the final resize then has far fewer pixels to touch.
    """
    image = open_checked(data, limits)
    try:
        if draft_side and image.format == "JPEG":
            image.draft("RGB", _draft_request(image.size, draft_side))
        image.seek(0)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # upright; no copy when there is nothing to turn
        return to_rgb(image)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
            ZeroDivisionError, Image.DecompressionBombError) as exc:
        raise BadImageError(f"cannot decode image (truncated or corrupt): {exc}") from exc


def same_decode(data: bytes, side_a: int | None, side_b: int | None) -> bool:
    """Whether ``decode(data, draft_side=side_a)`` and ``decode(data, draft_side=side_b)`` give the same
    pixels: the same JPEG DCT scale (read from the header, nothing decoded), or no draft at all. Two
    models fed from one upload (compare's similarity model and copy detector) then share one decode."""
    if side_a == side_b:
        return True
    try:
        sizes = []
        for side in (side_a, side_b):
            image = Image.open(io.BytesIO(data))
            if side and image.format == "JPEG":
                image.draft("RGB", _draft_request(image.size, side))
            sizes.append(image.size)
    except Exception:  # noqa: BLE001 - unreadable here: the caller decodes again and reports it
        return False
    return sizes[0] == sizes[1]


def _draft_request(size: tuple[int, int], side: int) -> tuple[int, int]:
    """Ask draft() for a size that keeps the short side >= ``side``.

    draft() picks the largest DCT scale whose result is still >= the requested size in both
    dimensions, so request the image's own aspect ratio scaled to the short side (orientation
    does not matter: only the short side is constrained).
    """
    w, h = size
    if w <= h:
        return side, max(side, int(h * side / w))
    return max(side, int(w * side / h)), side


def load_image(
    source: ImageSource, limits: ImageLimits = DEFAULT_LIMITS, *, draft_side: int | None = None
) -> Image.Image:
    """Path, bytes, PIL image or HxWx3 uint8 array -> upright RGB PIL image."""
    if isinstance(source, Image.Image):
        if source.width * source.height > limits.max_pixels:
            raise ImageTooLargeError(f"image has {source.width * source.height} pixels; the limit is "
                                     f"{limits.max_pixels}{_PIXELS_SETTING}")
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    data = read_source_bytes(source, limits)
    assert data is not None
    return decode(data, limits, draft_side=draft_side)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise BadImageError(f"array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(array))


def pixel_digest(image: Image.Image) -> str:
    """Identity of decoded pixels: two files with the same pixels are an `exact` copy."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()
