"""What does one image cost, and what does that make 10M or 100M images cost?

Measured here, side by side in one run (so the ratios mean something on a shared machine):

1. per-image stage costs on one core: read + content hash, decode (JPEG draft), preprocess, embed
   (ONNX Runtime, batch 16), on the DEV photos (long side <= 512 px) and on the same photos
   re-encoded at 1600 px (a typical marketplace upload);
2. end-to-end throughput (best of 2): single process with 1 and with all threads, and Ray Data with
   an actor pool (N actors x 1 thread), whole runs and net of the fixed per-run cost (actor start,
   model load), Ray start-up reported apart;
3. vector index memory per vector and query latency for the index types a big catalog would use
   (Flat, HNSW32, IVF-PQ, SQ8), measured with FAISS on random unit vectors of the model's dim
   (memory does not depend on the data; recall does, and is not claimed here).

From those numbers it projects CPU-hours, wall time on N workers and money for 10M and 100M
images (price per vCPU-hour is an argument, not a measurement).

Run: ``python benchmarks/scaling.py [--images 256] [--workers 2] [--out benchmarks/results/scaling.md]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_settings as common_settings  # noqa: E402

from lookalike.config import Settings  # noqa: E402
from lookalike.embed import create_embedder  # noqa: E402
from lookalike.imaging import IMAGE_EXTENSIONS, content_hash, decode, read_source_bytes  # noqa: E402

SHARED = Path(os.environ.get("LOOKALIKE_SHARED_DIR", REPO.parent / "shared"))
DEV = SHARED / "data"
CACHE = Path(os.environ.get("LOOKALIKE_TEST_CACHE", REPO / ".lookalike" / "test-cache"))


def bench_settings(threads: int | None) -> Settings:
    return common_settings(threads=threads)


def dev_images(limit: int) -> list[Path]:
    if DEV.is_dir():
        paths = sorted(p for p in DEV.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    else:  # outside the workplace: the bundled sample photos, repeated
        paths = sample_images(Path(tempfile.mkdtemp(prefix="lookalike-samples-")))
    return (paths * (limit // max(len(paths), 1) + 1))[:limit]


def sample_images(folder: Path) -> list[Path]:
    from skimage import data as skdata
    from sklearn.datasets import load_sample_image

    arrays = [load_sample_image("china.jpg"), load_sample_image("flower.jpg"), skdata.astronaut(),
              skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    out = []
    for i, array in enumerate(arrays):
        path = folder / f"sample{i}.jpg"
        Image.fromarray(array).save(path, quality=90)
        out.append(path)
    return out


def upscaled(paths: list[Path], folder: Path, side: int = 1600) -> list[Path]:
    """The same photos re-encoded with a 1600 px long side: decode cost at marketplace size."""
    out = []
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        scale = side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        target = folder / f"{i:05d}.jpg"
        image.save(target, quality=90)
        out.append(target)
    return out


# --- 1. stage costs -----------------------------------------------------------------------------
def stage_costs(paths: list[Path], embedder) -> dict[str, float]:  # noqa: ANN001
    """Milliseconds per image for each stage, one thread, batch 16."""
    t = {"read+hash": 0.0, "decode": 0.0, "preprocess": 0.0, "embed": 0.0}
    for start in range(0, len(paths), 16):
        images = []
        for path in paths[start : start + 16]:
            t0 = time.perf_counter()
            data = read_source_bytes(path, embedder.limits)
            content_hash(data)
            t1 = time.perf_counter()
            images.append(decode(data, embedder.limits, draft_side=embedder.preprocessing.decode_side))
            t2 = time.perf_counter()
            t["read+hash"] += t1 - t0
            t["decode"] += t2 - t1
        t0 = time.perf_counter()
        batch = embedder.preprocessing.to_array(images)
        t1 = time.perf_counter()
        embedder.encode_arrays(batch)
        t2 = time.perf_counter()
        t["preprocess"] += t1 - t0
        t["embed"] += t2 - t1
    costs = {k: 1000 * v / len(paths) for k, v in t.items()}
    costs["total"] = sum(costs.values())
    return costs


def single_process(paths: list[Path], embedder) -> float:  # noqa: ANN001
    """Images per second, read -> hash -> decode -> embed in one process."""
    t0 = time.perf_counter()
    for start in range(0, len(paths), 16):
        images = []
        for path in paths[start : start + 16]:
            data = read_source_bytes(path, embedder.limits)
            content_hash(data)
            images.append(decode(data, embedder.limits, draft_side=embedder.preprocessing.decode_side))
        embedder.encode_decoded(images)
    return len(paths) / (time.perf_counter() - t0)


def with_ray(paths: list[Path], settings: Settings, workers: int, repeat: int = 2) -> tuple[float, float, float]:
    """(images/s end to end, images/s net of the per-run fixed cost, Ray start-up seconds).

    The net rate is differential: (n - n_small) / (t(n) - t(n_small)) over two runs on the same
    Ray, so actor start-up and model loading (paid once per run, whatever its size) cancel out.
    Output order is preserved, so arrival times cannot be used: batches queue up behind the first.
    """
    import ray

    from lookalike.catalog.ray_indexer import embed_with_ray, ray_init

    def run(subset: list[Path]) -> float:
        t0 = time.perf_counter()
        for _ in embed_with_ray([str(p) for p in subset], settings=settings, workers=workers, batch_size=16):
            pass
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    ray_init(num_cpus=workers)
    startup = time.perf_counter() - t0
    small = paths[: max(2 * workers * 16, len(paths) // 8)]
    try:
        t_small = min(run(small) for _ in range(repeat))
        t_full = min(run(paths) for _ in range(repeat))
    finally:
        ray.shutdown()
    net = (len(paths) - len(small)) / max(t_full - t_small, 1e-9)
    return len(paths) / t_full, net, startup


def catalog_indexing(paths: list[Path], settings: Settings, workers: int) -> dict[str, float]:
    """Images/s into a real catalog: the threaded single-process indexer vs Ray (same folder)."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder
    from lookalike.catalog.ray_indexer import index_with_ray

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-scaling-index-"))
    folder = tmp / "images"
    folder.mkdir()
    for i, path in enumerate(dict.fromkeys(paths)):  # links, not copies: the DEV photos stay where they are
        (folder / f"{i:05d}{path.suffix.lower()}").symlink_to(path.resolve())
    local = settings.model_copy(update={"data_dir": tmp / "data", "threads": None})
    out = {}
    with Catalog("single", local) as catalog:
        report = index_folder(folder, catalog)
        out["single"] = report.embedded / report.elapsed_s
    with Catalog("ray", local) as catalog:
        report = index_with_ray(folder, catalog, workers=workers)
        out["ray"] = report.embedded / (report.elapsed_s - report.timings["ray_start"])
        out["ray_start"] = report.timings["ray_start"]
    out["n"] = len(list(folder.iterdir()))
    return out


def writer_rate(dim: int, n: int = 20_000, commit_every: int = 256) -> float:
    """Rows/s the driver can commit (SQLite rows + vectors, then the FAISS Flat index): the ceiling
    of one ``index --engine ray`` however many workers embed for it."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.metadata import NewImage

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-scaling-writer-"))
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [NewImage(f"/data/{i:08d}.jpg", f"{i:08d}.jpg", f"{i:032x}", 300_000, 1600, 1200, 0.0) for i in range(n)]
    with Catalog("writer", bench_settings(threads=None).model_copy(update={"data_dir": tmp})) as catalog:
        t0 = time.perf_counter()
        for start in range(0, n, commit_every):
            catalog.add_embedded(rows[start : start + commit_every], vectors[start : start + commit_every])
        catalog.flush()
        return n / (time.perf_counter() - t0)


# --- 3. index memory ----------------------------------------------------------------------------
def index_costs(dim: int, n: int, queries: int = 200) -> list[dict]:
    """Marginal bytes per vector (memory after 2n minus after n, over n: what grows with the
    catalog, training overhead such as IVF centroids excluded), build time and query latency."""
    from lookalike.catalog.stores.faiss import FaissStore

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2 * n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = vectors[rng.choice(2 * n, queries, replace=False)]
    nlist = max(8, n // 256)  # enough vectors per list that block padding does not hide the code size
    rows = []
    # 8-bit PQ64 takes minutes to train on a shared 2-core box; 4-bit fast-scan PQ is the modern
    # default for RAM-bound catalogs anyway, and its code size is the same formula (m * nbits / 8).
    for factory, params in [("Flat", ""), ("SQ8", ""), ("HNSW32", "efSearch=64"),
                            (f"IVF{nlist},SQ8", "nprobe=16"), (f"IVF{nlist},PQ64x4fs", "nprobe=16")]:
        store = FaissStore(dim, factory, search_params=params)
        t0 = time.perf_counter()
        store.add(np.arange(n), vectors[:n])
        first = store.memory_bytes()
        store.add(np.arange(n, 2 * n), vectors[n:])
        build = time.perf_counter() - t0
        marginal = (store.memory_bytes() - first) / n
        t0 = time.perf_counter()
        store.search(q, 10)
        per_query = 1000 * (time.perf_counter() - t0) / queries
        rows.append({"factory": factory, "params": params, "bytes_per_vector": marginal, "build_s": build,
                     "query_ms": per_query})
    return rows


# --- report -------------------------------------------------------------------------------------
def project(cost_ms: float, cores_per_worker: int, workers: list[int], usd_per_vcpu_hour: float) -> list[str]:
    lines = ["| images | CPU-hours | " + " | ".join(f"wall, {w} x {cores_per_worker} cores" for w in workers)
             + f" | cost at ${usd_per_vcpu_hour}/vCPU-h |", "|---|---|" + "---|" * len(workers) + "---|"]
    for n in (10_000_000, 100_000_000):
        cpu_h = n * cost_ms / 1000 / 3600
        walls = [cpu_h / (w * cores_per_worker) for w in workers]
        lines.append(f"| {n:,} | {cpu_h:,.0f} | " + " | ".join(_hours(h) for h in walls)
                     + f" | ${cpu_h * usd_per_vcpu_hour:,.0f} |")
    return lines


def _hours(h: float) -> str:
    return f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--large", type=int, default=64, help="how many 1600 px images to time")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--index-n", type=int, default=10_000)
    parser.add_argument("--usd-per-vcpu-hour", type=float, default=0.04)
    parser.add_argument("--cores-per-worker", type=int, default=16)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scaling.md")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    paths = dev_images(args.images)
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-scaling-"))
    large = upscaled(dev_images(args.large), tmp)
    one = create_embedder(settings=bench_settings(threads=1))
    many = create_embedder(settings=bench_settings(threads=cores))
    one.encode(paths[:16])  # warm-up
    many.encode(paths[:16])

    print("stage costs ...", flush=True)
    small_costs = stage_costs(paths, one)
    large_costs = stage_costs(large, one)
    print("throughput ...", flush=True)
    rate_1 = max(single_process(paths, one) for _ in range(2))  # best of 2: the machine is shared
    rate_n = max(single_process(paths, many) for _ in range(2))
    ray_rate = ray_steady = ray_start = indexing = None
    if not args.no_ray:
        try:
            ray_rate, ray_steady, ray_start = with_ray(paths, bench_settings(threads=1), args.workers)
            print("catalog indexing ...", flush=True)
            indexing = catalog_indexing(paths, bench_settings(threads=None), args.workers)
        except ImportError:
            pass
    print("writer ...", flush=True)
    writes = writer_rate(one.dim)
    print("index memory ...", flush=True)
    index_rows = index_costs(one.dim, args.index_n)

    out = [
        "# Scaling benchmark", "",
        f"`python benchmarks/scaling.py --images {args.images} --workers {args.workers}` on "
        f"{platform.processor() or platform.machine()}, {cores} cores (shared), model {one.model_name} @ "
        f"{one.input_size}px (dim {one.dim}), ONNX Runtime, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "## Per-image cost, one core (ms)", "",
        "| images | read+hash | decode | preprocess | embed | total |", "|---|---|---|---|---|---|",
    ]
    for label, c in ((f"DEV photos (<= 512 px), n={len(paths)}", small_costs),
                     (f"1600 px JPEG q90, n={len(large)}", large_costs)):
        out.append(f"| {label} | " + " | ".join(f"{c[k]:.2f}" for k in ("read+hash", "decode", "preprocess", "embed",
                                                                       "total")) + " |")
    out += ["", "## Throughput, DEV photos (images/s, same run)", "", "| engine | images/s | ratio |", "|---|---|---|",
            f"| single process, 1 thread | {rate_1:.1f} | 1.00 |",
            f"| single process, {cores} threads | {rate_n:.1f} | {rate_n / rate_1:.2f} |"]
    if ray_rate:
        out.append(f"| Ray Data, {args.workers} actors x 1 thread, whole run | {ray_rate:.1f} | {ray_rate / rate_1:.2f} |")
        out.append(f"| Ray Data, {args.workers} actors x 1 thread, net of fixed per-run cost | {ray_steady:.1f} | "
                   f"{ray_steady / rate_1:.2f} |")
        out += ["", f"Ray start-up (`ray.init`, local, not in the rate): {ray_start:.1f} s; actor model load excluded."]
    if indexing:
        out += ["", f"## Indexing into a catalog (SQLite + FAISS), {indexing['n']:.0f} DEV photos, same run", "",
                "| indexer | images/s | ratio |", "|---|---|---|",
                f"| `index_folder` (threaded reader, {cores} threads) | {indexing['single']:.1f} | 1.00 |",
                f"| `index_with_ray` ({args.workers} actors x 1 thread, Ray start excluded) | {indexing['ray']:.1f} | "
                f"{indexing['ray'] / indexing['single']:.2f} |",
                "", f"Ray start inside `index_with_ray`: {indexing['ray_start']:.1f} s."]
    out += ["", "## Driver-side writer", "",
            f"`Catalog.add_embedded` (SQLite rows + vectors, FAISS Flat), batches of 256: **{writes:,.0f} rows/s** "
            "(the ceiling of one indexing driver, whatever the number of Ray workers)."]
    out += ["", f"## Vector index, {2 * args.index_n:,} random unit vectors of dim {one.dim} (FAISS)", "",
            "| index | search params | bytes/vector (marginal) | build s (train + add) | query ms (k=10, per query, batch of 200) |",
            "|---|---|---|---|---|"]
    for row in index_rows:
        out.append(f"| {row['factory']} | {row['params'] or '-'} | {row['bytes_per_vector']:.0f} | "
                   f"{row['build_s']:.2f} | {row['query_ms']:.3f} |")
    worst = large_costs["total"]
    out += ["", f"## Projection (embedding cost {worst:.1f} ms/image/core, the 1600 px figure)", "",
            *project(worst, args.cores_per_worker, [1, 10, 50], args.usd_per_vcpu_hour), "",
            f"Price per vCPU-hour is an assumption (`--usd-per-vcpu-hour {args.usd_per_vcpu_hour}`), "
            "not a measurement; wall times assume linear scaling across workers, which Ray Data gives "
            "when reading is not the bottleneck (see docs/scaling.md)."]
    text = "\n".join(out) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
