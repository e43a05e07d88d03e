"""The bad-input corpus: files strangers may send, generated here (never downloaded).

Each ``Case`` is one request to the real API (``/v1/compare`` unless it says otherwise) and the
answer we promise: a specific 4xx JSON ``{"detail", "code"}`` for input we refuse, 200 for odd but
valid images (16-bit, CMYK, palette+alpha, animations, EXIF rotation), never a 500.

``python -m tests.reliability.badinput_corpus`` sends every case through an in-process app and
writes the table (input -> status -> code -> message) to ``docs/bad_inputs.md``.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

# The corpus app runs with a small upload limit so the oversize cases stay cheap.
CORPUS_LIMITS = {"max_upload_bytes": 2 * 1024 * 1024, "max_frames": 64, "max_request_bytes": 5 * 1024 * 1024}

_PHOTO_CACHE: dict[str, np.ndarray] = {}


def photo(name: str = "china") -> np.ndarray:
    """A real photo (scikit-learn's bundled samples), downsized so the corpus stays fast."""
    if name not in _PHOTO_CACHE:
        from sklearn.datasets import load_sample_image

        image = Image.fromarray(load_sample_image(f"{name}.jpg")).resize((320, 240), Image.Resampling.LANCZOS)
        _PHOTO_CACHE[name] = np.asarray(image)
    return _PHOTO_CACHE[name]


def encode(image: Image.Image | np.ndarray, fmt: str, **kwargs) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def good_jpeg() -> bytes:
    return encode(photo(), "JPEG", quality=92)


# --- generators: one small function per kind of bad file ---------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring 10 gigapixels, in a file of ~100 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def gif_bomb() -> bytes:
    """A GIF whose logical screen is 65535 x 65535 (4.3 gigapixels), in a few dozen bytes."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    # the first image descriptor declares the same size (Pillow takes the frame size from it)
    pos = data.index(b",")
    data[pos + 5 : pos + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def png_text_bomb() -> bytes:
    """A real PNG with a zTXt chunk that inflates to 64 MB of text (Pillow caps text chunks)."""
    base = encode(photo(), "PNG")
    ztxt = b"Comment\x00\x00" + zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    end = base.rindex(b"IEND") - 4
    return base[:end] + _png_chunk(b"zTXt", ztxt) + base[end:]


def corrupt_png_crc() -> bytes:
    data = bytearray(encode(photo(), "PNG"))
    data[29] ^= 0xFF  # a byte of the IHDR CRC
    return bytes(data)


def corrupt_jpeg_header() -> bytes:
    data = bytearray(good_jpeg())
    # keep SOI, scramble the next 200 bytes (APP0/DQT segments)
    rng = np.random.default_rng(7)
    data[2:202] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    return bytes(data)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", good_jpeg())
    return buffer.getvalue()


def eps_bytes() -> bytes:
    """PostScript: Pillow would hand it to Ghostscript (an interpreter); we never accept it."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 0 0 moveto 100 100 lineto stroke\nshowpage\n"


def svg_bytes() -> bytes:
    return b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>'


def png16() -> bytes:
    gray = np.asarray(Image.fromarray(photo()).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(gray), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(photo()).convert("CMYK"), "JPEG", quality=95)


def palette_with_alpha() -> bytes:
    rgba = Image.fromarray(photo()).convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:40, :40] = 0  # a transparent corner
    rgba.putalpha(Image.fromarray(alpha))
    return encode(rgba.quantize(255), "PNG")


def animation(fmt: str) -> bytes:
    """Three frames: the photo first, then two unrelated frames (we must use the first)."""
    first = Image.fromarray(photo())
    others = [Image.fromarray(photo("flower")), Image.new("RGB", first.size, (0, 0, 255))]
    return encode(first, fmt, save_all=True, append_images=others, duration=100, loop=0)


def too_many_frames() -> bytes:
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L")
              for _ in range(CORPUS_LIMITS["max_frames"] + 10)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)


def exif_rotated() -> bytes:
    """The photo stored rotated 90 degrees, with EXIF Orientation=6 saying "turn me back"."""
    stored = Image.fromarray(photo()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return encode(stored, "JPEG", quality=92, exif=exif.tobytes())


def upright_copy() -> bytes:
    return encode(photo(), "JPEG", quality=92)


def polyglot_jpeg_zip() -> bytes:
    """A JPEG with a ZIP archive appended: a valid image and a valid archive at once."""
    return good_jpeg() + zip_bytes()


def polyglot_html_first() -> bytes:
    """HTML that carries a JPEG inside: it starts as HTML, so it is not an image."""
    return b"<html><body><script>alert(1)</script><!--" + good_jpeg() + b"--></body></html>"


def tiny(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), (120, 30, 200)), "PNG")


def oversized() -> bytes:
    """A real JPEG padded past the per-file limit (but under the request limit)."""
    return good_jpeg() + b"\x00" * CORPUS_LIMITS["max_upload_bytes"]


def way_oversized() -> bytes:
    """Bigger than the whole-request limit: refused by the middleware while streaming."""
    return b"\xff\xd8" + b"\x00" * (CORPUS_LIMITS["max_request_bytes"] + 1024)


# --- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    name: str  # short label in the table
    make: Callable[[], bytes] | None  # the bad file (sent as image_1, with a good photo as image_2)
    status: int
    code: str | None  # expected error code; None for 200
    filename: str = "upload.jpg"
    path: str = "/v1/compare"
    params: dict = field(default_factory=dict)
    fields: tuple[str, str] = ("image_1", "image_2")  # multipart field names actually sent
    other: Callable[[], bytes] = good_jpeg  # what goes in the second field
    expect_verdict: str | None = None  # for 200s: the verdict we require against ``other``

    def files(self) -> list[tuple[str, tuple[str, bytes, str]]]:
        first = self.make() if self.make else good_jpeg()
        return [
            (self.fields[0], (self.filename, first, "image/jpeg")),
            (self.fields[1], ("other.jpg", self.other(), "image/jpeg")),
        ]


CASES: list[Case] = [
    Case("empty file", lambda: b"", 422, "bad_image"),
    Case("plain text renamed .jpg", lambda: b"hello, this is not an image\n" * 10, 422, "bad_image"),
    Case("HTML renamed .jpg", lambda: b"<!doctype html><html><body>hi</body></html>", 422, "bad_image"),
    Case("PDF renamed .jpg", pdf_bytes, 422, "bad_image"),
    Case("ZIP renamed .jpg", zip_bytes, 422, "bad_image"),
    Case("SVG renamed .jpg", svg_bytes, 422, "bad_image"),
    Case("PostScript/EPS (Ghostscript format)", eps_bytes, 422, "unsupported_format"),
    Case("truncated JPEG (first half)", lambda: truncated(good_jpeg()), 422, "bad_image"),
    Case("truncated PNG (first half)", lambda: truncated(encode(photo(), "PNG")), 422, "bad_image"),
    Case("JPEG header only (SOI+APP0)", lambda: good_jpeg()[:20], 422, "bad_image"),
    Case("corrupt JPEG header bytes", corrupt_jpeg_header, 422, "bad_image"),
    Case("corrupt PNG header (IHDR CRC)", corrupt_png_crc, 422, "bad_image"),
    Case("1x1 image", lambda: tiny(1, 1), 422, "image_too_small"),
    Case("100000x1 image", lambda: tiny(100_000, 1), 422, "image_too_small"),
    Case("2000x20 image (100:1 aspect)", lambda: tiny(2000, 20), 422, "bad_aspect_ratio"),
    Case("PNG bomb (100000x100000 declared, ~100 B)", png_bomb, 413, "image_too_large"),
    Case("GIF bomb (65535x65535 declared)", gif_bomb, 413, "image_too_large"),
    Case("PNG zTXt text bomb (64 MB inflated)", png_text_bomb, 422, "bad_image"),
    Case("GIF with more frames than max_frames", too_many_frames, 413, "image_too_large", filename="a.gif"),
    Case("16-bit grayscale PNG", png16, 200, None, filename="a.png"),
    Case("CMYK JPEG", cmyk_jpeg, 200, None, expect_verdict="near_duplicate"),
    Case("palette PNG with transparency", palette_with_alpha, 200, None, filename="a.png"),
    Case("animated GIF (first frame used)", lambda: animation("GIF"), 200, None, filename="a.gif",
         other=lambda: encode(Image.open(io.BytesIO(animation("GIF"))).convert("RGB"), "PNG")),
    Case("animated WebP (first frame used)", lambda: animation("WEBP"), 200, None, filename="a.webp",
         other=lambda: encode(photo(), "WEBP", lossless=True), expect_verdict="near_duplicate"),
    Case("EXIF-rotated JPEG vs upright copy", exif_rotated, 200, None, other=upright_copy,
         expect_verdict="near_duplicate"),
    Case("polyglot: JPEG + appended ZIP", polyglot_jpeg_zip, 200, None, other=good_jpeg,
         expect_verdict="near_duplicate"),
    Case("polyglot: HTML wrapping a JPEG", polyglot_html_first, 422, "bad_image"),
    Case("wrong multipart field names", None, 422, "invalid_request", fields=("file", "image")),
    Case("only one image sent", None, 422, "invalid_request", fields=("image_1", "image_1")),
    Case("unknown model", None, 404, "unknown_model", params={"model": "no_such_model"}),
    Case("input_size not allowed", None, 422, "bad_input_size", params={"input_size": 7}),
    Case("input_size not a number", None, 422, "invalid_request", params={"input_size": "big"}),
    Case("file over max_upload_bytes", oversized, 413, "image_too_large"),
    Case("body over max_request_bytes (streamed)", way_oversized, 413, "request_too_large"),
    Case("seed endpoint: not an image", lambda: b"GIF89a garbage", 422, "bad_image",
         path="/cosine_similarity_score"),
]


# verdicts that count as "the same photo" for the odd-but-valid cases
SAME = {"exact", "near_duplicate"}


def run_case(client, case: Case):
    """Send one case through an httpx-compatible client; returns the response."""
    return client.post(case.path, params=case.params, files=case.files())


def make_client(settings):
    """An in-process client of the real app (full middleware stack) with the corpus limits."""
    from fastapi.testclient import TestClient

    from lookalike.api.app import create_app

    return TestClient(create_app(settings.model_copy(update=CORPUS_LIMITS)), raise_server_exceptions=False)


def summarize(response) -> str:
    body = response.json()
    if response.status_code == 200:
        verdict = body.get("verdict") or body.get("Are the images similar?")
        score = body.get("score", body.get("Similarity Score"))
        return f"accepted: verdict `{verdict}`, score {score:.3f}"
    return str(body.get("detail", "")).replace("|", "\\|").replace("\n", " ")[:160]


def write_table(settings, out: Path) -> list[tuple[str, int, str, str]]:
    rows = []
    with make_client(settings) as client:
        for case in CASES:
            response = run_case(client, case)
            code = response.json().get("code", "") if response.status_code != 200 else ""
            rows.append((case.name, response.status_code, code, summarize(response)))
    lines = [
        "# Bad inputs: what the API answers",
        "",
        "Generated by `python -m tests.reliability.badinput_corpus` (the same corpus as",
        "`tests/reliability/test_bad_inputs.py`), each file sent as `image_1` of `POST /v1/compare`",
        f"with a real photo as `image_2`. Limits used: {CORPUS_LIMITS}.",
        "Every refusal is a JSON body `{\"detail\": ..., \"code\": ...}`; no input gives a 5xx.",
        "",
        "| input | status | code | message / outcome |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {status} | {code} | {message} |" for name, status, code, message in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return rows


def corpus_settings():
    """Offline settings like the test fixture's (real weights, no hub), for the command line."""
    import tempfile

    from lookalike.config import Settings

    repo = Path(__file__).resolve().parents[2]
    cache = repo / ".lookalike" / "test-cache"
    shared = repo.parent / "shared" / "weights"
    dirs = [cache / "weights"] + ([shared] if shared.is_dir() else [])
    return Settings(cache_dir=cache, weights_dirs=dirs, allow_hub_download=False,
                    data_dir=Path(tempfile.mkdtemp(prefix="lookalike-corpus-")), calibration_file=None)


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[2] / "docs" / "bad_inputs.md"
    for row in write_table(corpus_settings(), target):
        print(*row, sep="  |  ")
    print(f"wrote {target}")
