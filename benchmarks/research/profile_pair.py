"""Where one pair request's time goes: py-spy samples the live server while a client sends pairs.

A single client sends ``POST /v1/compare`` pairs of distinct real DEV photos back to back
(embedding cache off) while ``py-spy record`` samples every thread of the server process (idle
threads excluded, so the samples are CPU time). The result groups the samples by pipeline stage
and lists the functions with the most own time.

    python benchmarks/research/profile_pair.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common, accuracy, datasets
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_research_result, Server, dev_images, markdown_table

# stage -> substrings of a py-spy frame ("function (file:line)"); the innermost matching stage wins
STAGES = [
    ("HTTP: uvicorn/starlette/fastapi plumbing", ("uvicorn/", "starlette/", "fastapi/", "anyio/", "h11/", "httptools")),
    ("HTTP: multipart parsing", ("multipart/", "python_multipart/", "_parse_multipart", "parse_form")),
    ("read_upload (bytes of the two files)", ("read_upload",)),
    ("content hash (cache key)", ("content_hash",)),
    ("decode (JPEG draft, EXIF, RGB)", ("decode (", "open_checked", "to_rgb", "exif_transpose")),
    ("resize + normalize (to_array)", ("to_array", "resize (")),
    ("forward (inference engine)", ("forward (", "CoalescingForward")),
    ("geometry check (ORB + RANSAC)", ("refine_tier", "geometry.py")),
    ("exact-copy pixel digest", ("pixel_digest",)),
    ("thresholds / calibration lookup", ("thresholds_for", "load_calibration")),
    ("response model + JSON", ("serialize_response", "jsonable_encoder", "render (")),
]


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for stage, needles in reversed(STAGES):
            if any(n in frame for n in needles):
                return stage
    return "other (interpreter, GC, threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")

    import httpx

    photos = [p.read_bytes() for p in dev_images()]
    pairs = [(photos[i], photos[(i * 7 + 3) % len(photos)]) for i in range(len(photos))]
    out = Path(tempfile.mkdtemp(prefix="lookalike-profile-")) / "stacks.txt"
    requests = 0
    with Server(embedding_cache_size=0) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        def send(i: int) -> None:
            a, b = pairs[i % len(pairs)]
            client.post("/v1/compare", files={"image_1": ("a.jpg", a, "image/jpeg"),
                                              "image_2": ("b.jpg", b, "image/jpeg")}).raise_for_status()

        for i in range(20):  # warm-up: first-use imports (OpenCV for the geometry check) are not the steady state
            send(i)
        spy = subprocess.Popen([py_spy, "record", "--pid", str(server.proc.pid), "--rate", str(args.rate),
                                "--duration", str(int(args.seconds)), "--format", "raw", "--output", str(out),
                                "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches
        t0 = time.perf_counter()
        while spy.poll() is None and time.perf_counter() - t0 < args.seconds + 30:
            send(requests)
            requests += 1
        spy.wait(timeout=60)
    if not out.is_file():
        sys.exit(f"py-spy wrote nothing: {spy.stderr.read().decode()[-1000:]}")  # type: ignore[union-attr]

    stages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        if stack and stack[0].startswith(("process ", "thread ")):
            stack = [f for f in stack if not f.startswith(("process ", "thread "))]
        total += count
        stages[stage_of(stack)] += count
        own[stack[-1] if stack else "?"] += count

    cpu_s = total / args.rate
    per_request_ms = cpu_s * 1000.0 / max(requests, 1)
    body = (
        f"{requests} requests in about {args.seconds:.0f} s of sampling at {args.rate} Hz; {total} samples of "
        f"non-idle server threads = {cpu_s:.2f} CPU s, about {per_request_ms:.1f} CPU ms per pair request "
        "(the engine's own worker threads run native code that py-spy attributes to the calling frame "
        "only for the calling thread).\n\n## By stage\n\n"
        + markdown_table(["stage", "samples", "share"],
                         [(s, n, f"{100.0 * n / total:.1f}%") for s, n in stages.most_common()])
        + "\n\n## Functions with the most own time\n\n"
        + markdown_table(["function (file:line)", "samples", "share"],
                         [(f"`{f}`", n, f"{100.0 * n / total:.1f}%") for f, n in own.most_common(15)])
        + "\n"
    )
    write_research_result("profile_pair", "Profile of pair requests (py-spy on the live server)", body,
                 "python benchmarks/research/profile_pair.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
