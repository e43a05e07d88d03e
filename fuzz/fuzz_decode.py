"""atheris harness for the decode path: bytes from strangers -> header checks -> RGB -> model input.

The contract under test: for ANY bytes, ``decode`` either returns an RGB image or raises a
``LookalikeError`` (which the API turns into a 4xx). Any other exception, a hang or a memory blow-up
is a finding. Pillow and lookalike are instrumented for coverage feedback.

Short run (what CI does through ``tests/reliability/test_fuzz_short.py``, ~25 s)::

    pip install -e '.[fuzz]'
    python fuzz/fuzz_decode.py --seeds fuzz/corpus            # write the seed corpus once
    python fuzz/fuzz_decode.py fuzz/corpus -max_total_time=25 -rss_limit_mb=2048

Long run (an hour, 2 workers; crashes land in ./crash-*)::

    python fuzz/fuzz_decode.py fuzz/corpus -max_total_time=3600 -jobs=2 -workers=2 -rss_limit_mb=2048 -timeout=10

Reproduce a crash: ``python fuzz/fuzz_decode.py crash-<hash>``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

# Small limits: the fuzzer explores parsing, not how long a legal 50 MP decode takes.
MAX_PIXELS = 4_000_000


def seed_images() -> dict[str, bytes]:
    """One small valid file per accepted format and odd mode: the fuzzer mutates from these."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    frames = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(3)]
    exif = Image.Exif()
    exif[0x0112] = 6

    def save(image, fmt, **kwargs) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **kwargs)
        return buffer.getvalue()

    return {
        "rgb.jpg": save(rgb, "JPEG", quality=80),
        "progressive.jpg": save(rgb, "JPEG", progressive=True),
        "exif.jpg": save(rgb, "JPEG", exif=exif.tobytes()),
        "cmyk.jpg": save(rgb.convert("CMYK"), "JPEG"),
        "rgba.png": save(rgb.convert("RGBA"), "PNG"),
        "palette.png": save(rgb.quantize(16), "PNG", transparency=0),
        "gray16.png": save(Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)), "PNG"),
        "anim.gif": save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "anim.webp": save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "lossless.webp": save(rgb, "WEBP", lossless=True),
        "rgb.bmp": save(rgb, "BMP"),
        "rgb.tiff": save(rgb, "TIFF", compression="tiff_deflate"),
        "multi.tiff": save(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
    }


def write_seeds(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_images()
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    return len(seeds)


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[1] == "--seeds":
        print(f"wrote {write_seeds(Path(argv[2]))} seed files to {argv[2]}")
        return

    import atheris

    with atheris.instrument_imports(include=["PIL", "lookalike"]):
        from PIL import Image  # noqa: F401 - instrumented for coverage

        from lookalike.errors import LookalikeError
        from lookalike.imaging import ImageLimits, Preprocessing, decode

    limits = ImageLimits(max_bytes=4 * 1024 * 1024, max_pixels=MAX_PIXELS, max_frames=64)
    crop = Preprocessing(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", 0.875, "crop")

    def test_one_input(data: bytes) -> None:
        try:
            image = decode(data, limits, draft_side=64)
        except LookalikeError:
            return
        assert image.mode == "RGB" and image.width * image.height <= MAX_PIXELS, (image.mode, image.size)
        crop.to_array([image])  # the transform must cope with whatever shape got through

    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
