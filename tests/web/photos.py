"""Real sample photos and edited copies of them (the kind of near-duplicate users upload)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance


def edited_copy(source: Path, target: Path) -> Path:
    """Cropped a little, downscaled, brightened and recompressed: a near-duplicate of ``source``."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        w, h = image.size
        image = image.crop((int(w * 0.04), int(h * 0.04), int(w * 0.97), int(h * 0.96)))
        image = image.resize((int(image.width * 0.8), int(image.height * 0.8)), Image.Resampling.LANCZOS)
        image = ImageEnhance.Brightness(image).enhance(1.1)
        image.save(target, "JPEG", quality=72)
    return target
