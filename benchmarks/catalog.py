"""Catalog scale: indexing throughput vs bare inference, and which FAISS index to use at 100k / 1M.

(a) Indexing: ``index_folder`` over the real DEV photos (decode pool + batched ONNX Runtime +
    SQLite commits) vs the same model's bare batched forward pass on already-preprocessed arrays,
    measured in the same run. Goal: ratio >= 0.8.
(b) Search: for each candidate ``faiss.index_factory`` string, top-10 latency (one query at a
    time, p50/p99), recall@10 against exact search (``Flat``), and bytes per vector.
    Vectors: a Gaussian fitted to real embeddings (DEV photos + augmented copies; top-256 PCA
    directions + isotropic rest, then L2-normalized) fills the database; the real DEV
    embeddings are in the database too. Two query sets: fresh draws from the same Gaussian, and
    real embeddings of augmented copies of DEV photos (not in the database) whose originals are.
    Vectors are generated in seeded chunks, so 1M x 1280 float32 (5 GB) is never held twice.

Run: ``python benchmarks/catalog.py [--quick] [--sizes 100000 1000000]``
"""

from __future__ import annotations

import argparse
import gc
import io
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEV_DATA, bench_settings, markdown_table, percentile, write_result  # noqa: E402

DIM_PCA = 256


# --- real embeddings ---------------------------------------------------------------------------
def augment(image, rng: random.Random):  # noqa: ANN001, ANN201 - PIL images
    """A plausible catalog edit: crop, resize, colour, flip, JPEG."""
    from PIL import Image, ImageEnhance

    w, h = image.size
    f = rng.uniform(0.75, 0.97)
    cw, ch = int(w * f), int(h * f)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = image.crop((x, y, x + cw, y + ch)).resize((max(32, int(cw * rng.uniform(0.5, 1.0))),
                                                     max(32, int(ch * rng.uniform(0.5, 1.0)))))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    if rng.random() < 0.3:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=rng.randint(40, 90))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def real_embeddings(embedder, per_image: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """(DEV embeddings, augmented-copy embeddings, index of each copy's original)."""
    from lookalike.catalog.indexer import walk_images

    paths = list(walk_images(DEV_DATA))
    base = embedder.encode(paths)
    rng = random.Random(0)
    sources = [i for i, p in enumerate(paths) if "/edited/" not in str(p)]
    images, owners = [], []
    for i in sources:
        original = embedder.load(paths[i])
        for _ in range(per_image):
            images.append(augment(original, rng))
            owners.append(i)
    augmented = np.concatenate([embedder.encode_decoded(images[s : s + 64]) for s in range(0, len(images), 64)])
    return base, augmented, np.asarray(owners)


class Gaussian:
    """A Gaussian fitted to real embeddings: top PCA directions + isotropic residual."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.mean = vectors.mean(axis=0)
        centered = vectors - self.mean
        _, s, vt = np.linalg.svd(centered, full_matrices=False)
        stds = s / np.sqrt(len(vectors) - 1)
        self.basis = (stds[:DIM_PCA, None] * vt[:DIM_PCA]).astype(np.float32)
        rest = float((stds[DIM_PCA:] ** 2).sum())
        self.iso = np.float32(np.sqrt(rest / vectors.shape[1]))

    def draw(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, DIM_PCA), dtype=np.float32)
        v = self.mean + z @ self.basis + self.iso * rng.standard_normal((n, self.mean.shape[0]), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v.astype(np.float32)


def database_chunks(gauss: Gaussian, real: np.ndarray, n: int, chunk: int = 50_000):
    """The database in chunks (same bytes on every call): real DEV vectors first, then draws."""
    yield real
    left, seed = n - len(real), 1000
    while left > 0:
        take = min(chunk, left)
        yield gauss.draw(take, seed)
        left -= take
        seed += 1


# --- (b) search ----------------------------------------------------------------------------------
def build(factory: str, dim: int, chunks, train: np.ndarray | None):  # noqa: ANN001, ANN201
    import faiss

    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    start = time.perf_counter()
    if not index.is_trained:
        index.train(train)
    for part in chunks:
        index.add(part)
    return index, time.perf_counter() - start


def measure(index, queries: np.ndarray, gt: np.ndarray, latency_n: int, k: int = 10) -> dict:  # noqa: ANN001
    _, found = index.search(queries, k)
    recall = float(np.mean([len(set(found[i]) & set(gt[i])) / k for i in range(len(queries))]))
    samples = []
    for q in queries[:latency_n]:
        t = time.perf_counter()
        index.search(q[None, :], k)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {"recall": recall, "p50": percentile(samples, 50), "p99": percentile(samples, 99)}


def set_param(index, name: str, value: int) -> None:  # noqa: ANN001
    import faiss

    faiss.ParameterSpace().set_index_parameter(index, name, value)


def search_bench(gauss: Gaussian, real: np.ndarray, aug: np.ndarray, n: int, candidates, latency_n: int) -> list[list]:
    import faiss

    dim = real.shape[1]
    synth_q = gauss.draw(500, seed=7)
    real_q = aug[np.random.default_rng(1).permutation(len(aug))[:500]]
    queries = {"synthetic": synth_q, "augmented real": real_q}
    print(f"[{n}] exact index ...", flush=True)
    flat, build_s = build("Flat", dim, database_chunks(gauss, real, n), None)
    gts = {name: flat.search(q, 10)[1] for name, q in queries.items()}
    rows = []
    base = {name: measure(flat, q, gts[name], min(latency_n, 50)) for name, q in queries.items()}
    rows.append([n, "Flat", "-", base["synthetic"]["p50"], base["synthetic"]["p99"], 1.0, 1.0,
                 faiss.serialize_index(flat).nbytes / n if n <= 200_000 else 4 * dim, build_s])
    del flat
    gc.collect()
    train = gauss.draw(min(n, 100_000), seed=99)
    for factory, param, values in candidates:
        print(f"[{n}] {factory} ...", flush=True)
        index, build_s = build(factory, dim, database_chunks(gauss, real, n), train)
        nbytes = faiss.serialize_index(index).nbytes / n
        for value in values:
            if param:
                set_param(index, param, value)
            got = {name: measure(index, q, gts[name], latency_n) for name, q in queries.items()}
            rows.append([n, factory, f"{param}={value}" if param else "-", got["synthetic"]["p50"],
                         got["synthetic"]["p99"], got["synthetic"]["recall"], got["augmented real"]["recall"],
                         nbytes, build_s])
            print("   ", rows[-1], flush=True)
        del index
        gc.collect()
    return rows


def candidates_for(n: int, quick: bool, with_hnsw_1m: bool = False) -> list[tuple[str, str, list[int]]]:
    nlist = 4096 if n >= 500_000 else (1024 if n >= 50_000 else 256)
    out = [
        (f"IVF{nlist},Flat", "nprobe", [8, 16, 32, 64]),
        (f"IVF{nlist},SQ8", "nprobe", [16, 64]),
    ]
    if quick:  # PQ: 4x smaller than SQ8 but recall@10 0.35 / 0.70 and a 400 s train at 20k: quick runs only
        out.append((f"IVF{nlist},PQ64", "nprobe", [16]))
    if n <= 200_000 or with_hnsw_1m:  # HNSW build is ~2.5 ms/vector on 2 cores: 40+ min at 1M
        out.insert(1, ("HNSW32", "efSearch", [64, 128, 256]))
    return out


# --- (a) indexing throughput ---------------------------------------------------------------------
def throughput(settings, embedder) -> list[list]:  # noqa: ANN001
    """index_folder img/s vs bare forward img/s of the same embedder (bare measured before and after)."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder, walk_images

    paths = list(walk_images(DEV_DATA))
    arrays = embedder.preprocessing.to_array([embedder.load(p) for p in paths[:256]])
    embedder.encode_arrays(arrays[:32])  # warm-up

    def bare() -> float:
        t = time.perf_counter()
        embedder.encode_arrays(np.concatenate([arrays, arrays]))
        return 2 * len(arrays) / (time.perf_counter() - t)

    before = bare()
    with tempfile.TemporaryDirectory() as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp)})
        with Catalog("bench", local) as catalog:
            report = index_folder(DEV_DATA, catalog, embedder=embedder)
    rate = report.embedded / report.elapsed_s
    after = bare()
    print(f"   {embedder.backend}: bare before {before:.1f}, after {after:.1f} img/s", flush=True)
    forward = (before + after) / 2
    stages = ", ".join(f"{k} {v:.1f}" for k, v in report.timings.items())
    return [[embedder.backend, f"{report.embedded} DEV photos", f"{rate:.1f}", f"{forward:.1f}",
             f"{rate / forward:.2f}", stages]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k vectors, fewer queries")
    parser.add_argument("--name", default=None, help="results file under benchmarks/results/ (default: "
                        "catalog_quick or catalog_full; catalog.md is the hand-merged summary)")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--hnsw-1m", action="store_true", help="also build HNSW32 above 200k vectors (slow)")
    parser.add_argument("--only", nargs="*", default=None, help="only these factory strings (besides Flat)")
    args = parser.parse_args()
    if not (DEV_DATA / "pairs.csv").is_file():
        sys.exit(f"DEV data not found at {DEV_DATA}: this benchmark needs real photos")
    from lookalike.embed import create_embedder

    settings = bench_settings()
    embedder = create_embedder(settings=settings)
    sizes = args.sizes or ([20_000] if args.quick else [100_000, 1_000_000])
    sections = []
    if not args.skip_throughput:
        rows = []
        for backend in dict.fromkeys(["onnxruntime", embedder.backend]):  # ORT, and the default engine
            engine = embedder if backend == embedder.backend else create_embedder(settings=settings, backend=backend)
            rows += throughput(settings, engine)
        sections.append("## (a) Indexing throughput vs the bare batched forward of the same model and engine "
                        "(same run)\n\n" + markdown_table(["engine", "images", "index_folder img/s",
                                                            "bare forward img/s", "ratio", "stage seconds"], rows))
        print(sections[-1], flush=True)
    command = "python benchmarks/catalog.py " + " ".join(sys.argv[1:])
    name = args.name or ("catalog_quick" if args.quick else "catalog_full")
    if args.skip_search:
        write_result(name, "Catalog: indexing throughput", "\n\n".join(sections), command)
        return
    print("embedding real photos + augmented copies ...", flush=True)
    base, aug, _ = real_embeddings(embedder, 2 if args.quick else 6)
    gauss = Gaussian(np.concatenate([base, aug]))
    rows = []
    for n in sizes:
        candidates = candidates_for(n, args.quick, args.hnsw_1m or bool(args.only))
        if args.only:
            candidates = [c for c in candidates if c[0] in args.only]
        rows += search_bench(gauss, base, aug, n, candidates, 100 if args.quick else 300)
    table = markdown_table(
        ["vectors", "index", "search param", "p50 ms", "p99 ms", "recall@10 (synthetic)",
         "recall@10 (augmented real)", "bytes/vector", "build s"],
        [[r[0], r[1], r[2], r[3], r[4], r[5], r[6], f"{r[7]:.0f}", f"{r[8]:.1f}"] for r in rows])
    sections.append(
        "## (b) Top-10 search: latency (one query at a time), recall@10 vs exact search, memory\n\n"
        f"Database: {len(base)} real DEV embeddings + draws from a Gaussian fitted to {len(base) + len(aug)} real "
        f"embeddings (dim {base.shape[1]}). Queries: 500 fresh draws; 500 real embeddings of augmented DEV copies "
        "(crop, resize, brightness, flip, JPEG 40-90). Latency: p50/p99 over single-query searches on the "
        "synthetic set.\n\n" + table)
    write_result(name, "Catalog: indexing throughput and vector search at scale", "\n\n".join(sections), command)


if __name__ == "__main__":
    main()
