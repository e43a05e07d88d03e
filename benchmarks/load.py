"""Load: a real ``lookalike serve`` on 127.0.0.1 under 1, 8 and 32 concurrent clients.

Each client loops ``POST /v1/compare`` with distinct real photos (variants of the scikit-learn
and scikit-image samples; the embedding cache is off, so every request runs inference). Bounded in
count and time per level. Reported per level: throughput, p50/p99 latency, error rate with the
deliberate 503 backpressure answers counted apart, and the server's RSS before and after.

The last level ("overload") starts a second server with a small ``max_queue`` and drives it with
more clients than the queue holds, to show backpressure is a fast 503 + Retry-After, not a stall.

    python benchmarks/load.py                       # CI-sized: ~200 requests per level (~1-2 min)
    python benchmarks/load.py --soak 10000          # leak check: 10k requests, RSS sampled every 1000

Goal: 0 errors other than deliberate 503s; RSS at the end of the soak within 10% of RSS once the first
1000 requests have settled the allocator (growth since the 100-request warm-up is reported too).
``--rerender`` rewrites ``load_soak.md`` from ``load_soak.json`` without measuring again.
Writes ``benchmarks/results/load.md`` (``load_soak.md`` for the soak) and a ``.json`` beside each.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, Server, markdown_table, percentile, write_result  # noqa: E402


def photo_variants(n: int = 48) -> list[bytes]:
    """Distinct JPEGs: crops and qualities of real sample photos (no two share bytes)."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata
    from sklearn.datasets import load_sample_image

    bases = [load_sample_image("china.jpg"), load_sample_image("flower.jpg"), skdata.astronaut(), skdata.chelsea(),
             skdata.coffee(), skdata.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = Image.fromarray(bases[i % len(bases)])
        w, h = image.size
        left, top = int(rng.integers(0, w // 6)), int(rng.integers(0, h // 6))
        crop = image.crop((left, top, left + int(w * 0.8), top + int(h * 0.8))).resize((480, 360))
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=int(rng.integers(70, 95)))
        out.append(buffer.getvalue())
    return out


@dataclass
class Level:
    name: str
    clients: int
    requests: int
    seconds: float
    ok: int
    busy_503: int
    errors: int
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    rss_before_mb: float
    rss_after_mb: float
    error_samples: list[str]


async def drive(url: str, images: list[bytes], clients: int, total: int, max_seconds: float) -> tuple:
    import httpx

    latencies: list[float] = []
    counts = {"ok": 0, "busy": 0, "errors": 0}
    samples: list[str] = []
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < total and time.perf_counter() < deadline:
            i = issued
            issued += 1
            a, b = images[i % len(images)], images[(i * 7 + index + 1) % len(images)]
            t0 = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/compare", files={"image_1": ("a.jpg", a, "image/jpeg"),
                                                                       "image_2": ("b.jpg", b, "image/jpeg")})
                status = response.status_code
            except httpx.HTTPError as exc:
                status, response = -1, exc
            elapsed = (time.perf_counter() - t0) * 1000.0
            if status == 200:
                counts["ok"] += 1
                latencies.append(elapsed)
            elif status == 503:
                counts["busy"] += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")) / 10)  # polite, but keep pressure
            else:
                counts["errors"] += 1
                if len(samples) < 5:
                    samples.append(f"{status}: {getattr(response, 'text', repr(response))[:200]}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - t0
    return latencies, counts, samples, wall


def run_level(server: Server, name: str, images: list[bytes], clients: int, total: int, max_seconds: float) -> Level:
    before = server.rss_mb()
    latencies, counts, samples, wall = asyncio.run(drive(server.url, images, clients, total, max_seconds))
    after = server.rss_mb()
    ordered = sorted(latencies)
    level = Level(name, clients, counts["ok"] + counts["busy"] + counts["errors"], wall, counts["ok"], counts["busy"],
                  counts["errors"], counts["ok"] / wall if wall else 0.0, percentile(ordered, 50),
                  percentile(ordered, 99), before, after, samples)
    print(f"{name}: {clients} clients, {level.requests} req in {wall:.1f}s, {level.throughput:.1f} ok/s, "
          f"p50 {level.p50_ms:.0f} ms, p99 {level.p99_ms:.0f} ms, 503 {level.busy_503}, errors {level.errors}, "
          f"RSS {before:.0f} -> {after:.0f} MB", flush=True)
    return level


def table(levels: list[Level]) -> str:
    rows = [(lv.name, lv.clients, lv.requests, round(lv.seconds, 1), round(lv.throughput, 1), round(lv.p50_ms),
             round(lv.p99_ms), lv.busy_503, lv.errors, f"{100.0 * lv.errors / max(1, lv.requests):.2f}%",
             round(lv.rss_before_mb), round(lv.rss_after_mb)) for lv in levels]
    return markdown_table(["level", "clients", "requests", "wall s", "ok/s", "p50 ms", "p99 ms", "503 (deliberate)",
                           "errors", "error rate", "RSS before MB", "RSS after MB"], rows)


def write_soak(baseline: float, levels: list[Level], requests: int, note: str = "") -> None:
    """Growth from the warm-up, and from the first 1000 soak requests (allocator arenas settled)."""
    final = levels[-1].rss_after_mb
    growth = 100.0 * (final - baseline) / baseline
    settled = levels[0].rss_after_mb
    later = 100.0 * (final - settled) / settled
    errors = sum(lv.errors for lv in levels)
    verdict = "PASS" if abs(later) <= 10 and errors == 0 else "FAIL"
    body = (f"{requests} requests at 8 clients after a 100-request warm-up, embedding cache off. RSS after warm-up "
            f"{baseline:.0f} MB, after the first 1000 soak requests {settled:.0f} MB, at the end {final:.0f} MB: "
            f"**{growth:+.1f}%** since warm-up, **{later:+.1f}%** over the last {requests - 1000} requests "
            f"(goal: within 10%; the first 1000 requests grow malloc arenas for 8 concurrent decodes, a one-off). "
            f"Errors: **{errors}** — **{verdict}**.{note}\n\n{table(levels)}\n")
    (RESULTS / "load_soak.json").write_text(json.dumps({
        "requests": requests, "baseline_mb": baseline, "settled_mb": settled, "final_mb": final,
        "growth_pct": growth, "growth_after_settling_pct": later, "errors": errors, "verdict": verdict,
        "levels": [asdict(lv) for lv in levels]}, indent=1))
    write_result("load_soak", "Soak: RSS over 10k requests", body, f"python benchmarks/load.py --soak {requests}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per level")
    parser.add_argument("--max-seconds", type=float, default=90.0, help="time cap per level")
    parser.add_argument("--soak", type=int, default=0, help="run N requests at 8 clients instead (leak check)")
    parser.add_argument("--overload-queue", type=int, default=4, help="max_queue of the overload server")
    parser.add_argument("--rerender", action="store_true", help="rewrite load_soak.md from load_soak.json")
    args = parser.parse_args()
    images = photo_variants()
    RESULTS.mkdir(parents=True, exist_ok=True)

    if args.rerender:
        data = json.loads((RESULTS / "load_soak.json").read_text())
        levels = [Level(**lv) for lv in data["levels"]]
        write_soak(data["baseline_mb"], levels, data.get("requests", sum(lv.requests for lv in levels)),
                   " (Re-rendered from `load_soak.json`: the line above dates the rendering, not the measurement.)")
        return
    if args.soak:
        with Server(embedding_cache_size=0) as server:
            run_level(server, "warm-up", images, 8, 100, 120)
            baseline = server.rss_mb()
            levels, step = [], 1000
            for done in range(0, args.soak, step):
                levels.append(run_level(server, f"soak {done + step}", images, 8, step, 900))
        write_soak(baseline, levels, args.soak)
        return

    levels = []
    with Server(embedding_cache_size=0) as server:
        run_level(server, "warm-up", images, 4, 40, 60)
        for clients in (1, 8, 32):
            levels.append(run_level(server, f"{clients} clients", images, clients, args.requests, args.max_seconds))
    with Server(embedding_cache_size=0, max_queue=args.overload_queue) as server:
        run_level(server, "warm-up", images, 2, 10, 60)
        levels.append(run_level(server, f"overload (max_queue={args.overload_queue})", images, 32, args.requests,
                                args.max_seconds))
    errors = sum(lv.errors for lv in levels)
    growth = 100.0 * (levels[2].rss_after_mb - levels[0].rss_before_mb) / levels[0].rss_before_mb
    samples = [s for lv in levels for s in lv.error_samples]
    body = (f"`POST /v1/compare`, two distinct 480x360 JPEGs per request, embedding cache off, one inference "
            f"lane (default `max_queue`=64 except the overload row). Errors other than deliberate 503: "
            f"**{errors}**. RSS from the first level's start to the 32-client level's end: **{growth:+.1f}%** (buffers "
            f"for more concurrent requests; the leak check is the soak, `load_soak.md`).\n\n"
            f"{table(levels)}\n" + (f"\nError samples: {samples}\n" if samples else ""))
    (RESULTS / "load.json").write_text(json.dumps({"errors": errors, "rss_growth_pct": growth,
                                                   "levels": [asdict(lv) for lv in levels]}, indent=1))
    write_result("load", "Load: concurrent clients against lookalike serve", body,
                 f"python benchmarks/load.py --requests {args.requests}")


if __name__ == "__main__":
    main()
