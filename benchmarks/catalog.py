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

(c) ``--refine`` (1M by default): a compressed index in RAM gives candidates, the top R are
    re-ranked exactly with full vectors read from disk (memory map or the catalog's SQLite), with
    the fetch cost warm and cold. Inputs, exact neighbours and built indexes are cached under
    ``.lookalike/bench-cache/catalog`` (about 20 GB at 1M), so a re-run only measures.

Run: ``python benchmarks/catalog.py [--quick] [--sizes 100000 1000000]``;
``python benchmarks/catalog.py --refine [--only FACTORY ...]``;
``python benchmarks/catalog.py --refine --pca-check 200000``
"""

from __future__ import annotations

import argparse
import gc
import io
import mmap
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEV_DATA, REPO, bench_settings, markdown_table, percentile, write_result  # noqa: E402

DIM_PCA = 256
# The 1M search study reuses its inputs between runs: real embeddings, the database as a raw
# float32 file (also the re-rank stage's "full vectors on disk"), and exact neighbours.
CACHE = REPO / ".lookalike" / "bench-cache" / "catalog"


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


def cached_real(per_image: int) -> tuple[np.ndarray, np.ndarray]:
    """``real_embeddings`` of the default model, computed once and kept under CACHE."""
    from lookalike.embed import create_embedder

    path = CACHE / f"real_{per_image}.npz"
    if not path.is_file():
        base, aug, _ = real_embeddings(create_embedder(settings=bench_settings()), per_image)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, base=base, aug=aug)
    data = np.load(path)
    return data["base"], data["aug"]


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


def open_map(path: Path | str, dtype, shape: tuple[int, int]) -> np.memmap:  # noqa: ANN001
    """A read-only memory map advised MADV_RANDOM: a re-rank reads scattered rows, and the
    default readahead turns each cold 5 KB row into a large read."""
    mm = np.memmap(path, dtype=dtype, mode="r", shape=shape)
    mm._mmap.madvise(mmap.MADV_RANDOM)  # noqa: SLF001 - numpy keeps the mmap object there
    return mm


# --- (c) 1M: compressed candidates + exact re-rank from full vectors on disk -------------------
def cached_database(gauss: Gaussian, real: np.ndarray, n: int) -> np.memmap:
    """The database as a read-only float32 memory map (written once, chunk by chunk)."""
    path = CACHE / f"db_{n}_{real.shape[1]}.f32"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            for part in database_chunks(gauss, real, n):
                fh.write(np.ascontiguousarray(part, dtype=np.float32).tobytes())
        tmp.rename(path)
    return open_map(path, np.float32, (n, real.shape[1]))


def cached_f16(db: np.memmap) -> np.memmap:
    """A float16 copy of the database (half the disk and page cache for the re-rank fetch)."""
    path = Path(str(db.filename)).with_suffix(".f16")
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            for start in range(0, len(db), 50_000):
                fh.write(np.asarray(db[start : start + 50_000], dtype=np.float16).tobytes())
        tmp.rename(path)
    return open_map(path, np.float16, db.shape)


def cached_truth(db: np.memmap, queries: dict[str, np.ndarray], k: int = 10) -> dict[str, np.ndarray]:
    """Exact top-k ids of each query set (brute force over the memory map, once)."""
    import faiss

    path = CACHE / f"truth_{len(db)}.npz"
    if path.is_file():
        data = np.load(path)
        if all(name in data for name in queries):
            return {name: data[name] for name in queries}
    out = {}
    for name, q in queries.items():
        best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        best_i = np.full((len(q), k), -1, dtype=np.int64)
        for start in range(0, len(db), 100_000):
            s, i = faiss.knn(q, np.ascontiguousarray(db[start : start + 100_000]), k, faiss.METRIC_INNER_PRODUCT)
            s_all, i_all = np.hstack([best_s, s]), np.hstack([best_i, i + start])
            top = np.argsort(-s_all, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(s_all, top, 1), np.take_along_axis(i_all, top, 1)
        out[name] = best_i
    np.savez(path, **out)
    return out


def build_cached(factory: str, db: np.memmap, train_n: int = 100_000):  # noqa: ANN201
    """Train (``train_index``: a PCA in front does not centre) on a random sample, add in chunks.

    The built index is kept under CACHE, so a later run only measures."""
    import faiss

    from lookalike.catalog.stores.faiss import train_index

    n, dim = db.shape
    path = CACHE / f"index_{n}_{factory.replace(',', '_').replace('@', '_')}.v2.faiss"  # v2: uncentred PCA
    if path.is_file():
        meta = np.load(path.with_suffix(".times.npy"))
        return faiss.read_index(str(path)), float(meta[0]), float(meta[1])
    factory, _, ef_construction = factory.partition("@efC")  # "PCA128,HNSW32@efC160"
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if ef_construction:
        hnsw_of(index).efConstruction = int(ef_construction)
    start = time.perf_counter()
    if not index.is_trained:
        rows = np.sort(np.random.default_rng(5).choice(n, size=min(n, train_n), replace=False))
        train_index(index, np.ascontiguousarray(db[rows]))
    train_s = time.perf_counter() - start
    for lo in range(0, n, 50_000):
        index.add(np.ascontiguousarray(db[lo : lo + 50_000]))
        print(f"    added {lo + 50_000} ({time.perf_counter() - start:.0f} s)", flush=True)
    add_s = time.perf_counter() - start - train_s
    faiss.write_index(index, str(path))
    np.save(path.with_suffix(".times.npy"), np.array([train_s, add_s]))
    return index, train_s, add_s


def hnsw_of(index):  # noqa: ANN001, ANN201
    """The HNSW graph inside a (pre-transformed) index."""
    import faiss

    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index.hnsw


def refine_measure(index, queries: np.ndarray, gt: np.ndarray, fetch, refine: int, latency_n: int,  # noqa: ANN001
                   k: int = 10) -> dict:
    """recall@k and single-query latency of ``index`` (+ exact re-rank of its top ``refine``)."""
    from lookalike.catalog.stores.faiss import rerank_ids

    def one(q: np.ndarray) -> np.ndarray:
        _, ids = index.search(q, max(k, refine))
        if not refine:
            return ids[:, :k]
        return np.array([[h.id for h in row] for row in rerank_ids(q, ids, fetch, k)])

    found = np.concatenate([one(queries[s : s + 50]) for s in range(0, len(queries), 50)])
    recall = float(np.mean([len(set(found[i]) & set(gt[i])) / k for i in range(len(queries))]))
    samples = []
    for q in queries[:latency_n]:
        t = time.perf_counter()
        one(q[None, :])
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {"recall": recall, "p50": percentile(samples, 50), "p99": percentile(samples, 99)}


REFINE_CANDIDATES: list[tuple[str, str, list[int], list[int]]] = [
    # factory ("@efC<n>": HNSW efConstruction, FAISS default 40), search parameter, its values,
    # re-rank depths R (0 = the index's own top-10). FAISS's HNSW returns at most efSearch
    # candidates, so R > efSearch is skipped (it measured the same as R = efSearch).
    ("PCA128,HNSW32@efC160", "efSearch", [128, 256, 320, 384, 512], [0, 32, 64, 128]),
    ("PCA96,HNSW32@efC160", "efSearch", [256, 320, 352, 384], [0, 32, 64, 96]),
    ("PCA128,HNSW32", "efSearch", [64, 256, 512], [0, 64, 128]),
    # not measured at 1M yet (each build is 8-20 min on 2 cores); the centred-PCA versions lost
    ("PCA256,HNSW32", "efSearch", [64, 128, 256, 512], [0, 64, 128, 256, 512]),
    ("PCA128,IVF4096,PQ64x4fs", "nprobe", [32, 128], [0, 128, 256]),
    ("PCA512,HNSW32,SQ8", "efSearch", [128, 256], [0, 128]),
    ("IVF4096,SQ8", "nprobe", [16, 64], [0, 128]),
]


def refine_bench(gauss: Gaussian, real: np.ndarray, aug: np.ndarray, n: int, only: list[str] | None,
                 latency_n: int, only_candidates: bool = False,
                 fetch_names: tuple[str, ...] = ("f32 mmap",)) -> tuple[list[list], list[list]]:
    """Rows of the candidate + re-rank table, and of the fetch-cost table."""
    import faiss

    db = cached_database(gauss, real, n)
    db16 = cached_f16(db)
    queries = {"synthetic": gauss.draw(500, seed=7),
               "augmented real": aug[np.random.default_rng(1).permutation(len(aug))[:500]]}
    print(f"[{n}] exact neighbours ...", flush=True)
    gts = cached_truth(db, queries)
    fetchers = {"f32 mmap": lambda ids: np.asarray(db[ids]),  # rerank_ids passes sorted unique ids
                "f16 mmap": lambda ids: np.asarray(db16[ids], dtype=np.float32)}
    fetch_rows = []
    if "sqlite" in fetch_names:
        from lookalike.catalog.metadata import Metadata

        meta_fetch = Metadata(CACHE / f"meta_{n}.sqlite")
        fetchers["sqlite"] = lambda ids: meta_fetch.vectors(ids + 1, db.shape[1])
    if not only_candidates:
        print(f"[{n}] SQLite copy + fetch cost ...", flush=True)
        meta = cached_sqlite(db)
        # cold: a fresh mapping per fetch (pages mapped by a live mapping cannot be evicted)
        def fresh(mm: np.memmap):  # noqa: ANN202
            return lambda ids: np.asarray(open_map(mm.filename, mm.dtype, mm.shape)[ids], dtype=np.float32)

        fetch_rows = fetch_cost({
            "f32 memory map": (fetchers["f32 mmap"], fresh(db), [Path(db.filename)]),
            "f16 memory map": (fetchers["f16 mmap"], fresh(db16), [Path(db16.filename)]),
            "catalog SQLite (Metadata.vectors)": ((lambda ids: meta.vectors(ids + 1, db.shape[1])),) * 2
            + ([meta.path, Path(str(meta.path) + "-wal")],),
        }, n, keep_warm="f32 memory map")
        meta.close()
    rows = []
    for factory, param, values, refines in REFINE_CANDIDATES:
        if only and factory not in only:
            continue
        print(f"[{n}] {factory} ...", flush=True)
        faiss.omp_set_num_threads(2)
        index, train_s, add_s = build_cached(factory, db)
        faiss.omp_set_num_threads(1)  # single-query latency; a server runs queries side by side
        nbytes = faiss.serialize_index(index).nbytes / n
        for value in values:
            set_param(index, param, value)
            for refine in refines:
                if param == "efSearch" and refine > value:
                    continue
                for fname in (fetch_names if refine else ["-"]):
                    got = {name: refine_measure(index, q, gts[name], fetchers.get(fname), refine, latency_n)
                           for name, q in queries.items()}
                    rows.append([n, factory, f"{param}={value}", refine or "-", fname, got["synthetic"]["p50"],
                                 got["synthetic"]["p99"], got["synthetic"]["recall"], got["augmented real"]["recall"],
                                 f"{nbytes:.0f}", f"{train_s:.0f}", f"{add_s:.0f}"])
                    print("   ", rows[-1], flush=True)
        del index
        gc.collect()
    return rows, fetch_rows


def cached_sqlite(db: np.memmap):  # noqa: ANN201 - a catalog Metadata
    """The catalog's own SQLite (``Metadata``) holding the database's vectors: ids 1..n = rows 0..n-1."""
    from lookalike.catalog.metadata import Metadata, NewImage

    path = CACHE / f"meta_{len(db)}.sqlite"
    done = path.with_suffix(".done")
    if not done.is_file():
        path.unlink(missing_ok=True)
        meta = Metadata(path)
        for lo in range(0, len(db), 20_000):
            part = np.ascontiguousarray(db[lo : lo + 20_000])
            rows = [NewImage(f"/bench/{i}.jpg", f"{i}.jpg", f"{i:064x}", 1000, 224, 224, 0.0)
                    for i in range(lo, lo + len(part))]
            meta.insert(rows, part, "bench")
        meta.close()
        done.touch()
    return Metadata(path)


def read_through(paths: list[Path]) -> None:
    """Pull whole files into the page cache."""
    for p in paths:
        if p.is_file():
            with open(p, "rb") as fh:
                while fh.read(1 << 26):
                    pass


def evict(paths: list[Path]) -> None:
    """Drop these files from the page cache (clean pages only; no root needed)."""
    for p in paths:
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def fetch_cost(fetchers: dict, n: int, refines: tuple[int, ...] = (64, 128, 256), rounds: int = 200,
               cold_rounds: int = 20, keep_warm: str = "") -> list[list]:
    """Cost of fetching R random full vectors by (sorted) id: cold (file evicted first), then warm.

    ``fetchers``: name -> (warm fetch, cold fetch, files to evict). Cold figures are only cold
    when no mapping (in any process) has touched the files: a live mapping pins its pages, so
    cold rounds come first. Each source is then read whole into the page cache for its warm
    rounds and evicted afterwards, except ``keep_warm`` (the candidates' re-rank reads it)."""
    rng = np.random.default_rng(3)
    out = []
    for name, (warm_fetch, cold_fetch, files) in fetchers.items():
        for state, refine, count in [("cold", refines[-1], cold_rounds)] + [("warm", r, rounds) for r in refines]:
            if state == "warm" and refine == refines[0]:
                read_through(files)  # warm: the whole file in the page cache first
            samples = []
            for _ in range(count):
                ids = np.sort(rng.choice(n, size=refine, replace=False))
                fetch = warm_fetch
                if state == "cold":
                    evict(files)
                    fetch = cold_fetch
                t = time.perf_counter()
                fetch(ids)
                samples.append((time.perf_counter() - t) * 1000)
            samples.sort()
            out.append([name, state, refine, percentile(samples, 50), percentile(samples, 99)])
            print("   ", out[-1], flush=True)
        if name != keep_warm:
            evict(files)  # leave the page cache to the next source
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

    rows = []
    for features in (True, False):  # local features stored while indexing (the default), and not
        before = bare()
        with tempfile.TemporaryDirectory() as tmp:
            local = settings.model_copy(update={"data_dir": Path(tmp), "index_local_features": features})
            with Catalog("bench", local) as catalog:
                report = index_folder(DEV_DATA, catalog, embedder=embedder)
        rate = report.images_per_s
        after = bare()
        print(f"   {embedder.backend} (local features {'on' if features else 'off'}): bare before {before:.1f}, "
              f"after {after:.1f} img/s", flush=True)
        forward = (before + after) / 2
        stages = ", ".join(f"{k} {v:.1f}" for k, v in report.timings.items())
        rows.append([embedder.backend, "on" if features else "off", f"{report.embedded} DEV photos", f"{rate:.1f}",
                     f"{forward:.1f}", f"{rate / forward:.2f}", stages])
    return rows


def pca_check(gauss: Gaussian, real: np.ndarray, aug: np.ndarray, n: int, dims: tuple[int, ...] = (128, 256)) -> str:
    """Exact search on PCA projections (no graph): recall@10 of the top R after an exact re-rank,
    centred (FAISS's PCAMatrix as trained by ``index.train``) vs uncentred (``train_index``)."""
    import faiss

    db = np.ascontiguousarray(cached_database(gauss, real, 1_000_000)[:n])
    queries = {"synthetic": gauss.draw(300, seed=7), "augmented real": aug[np.random.default_rng(1).permutation(len(aug))[:300]]}
    truth = {name: faiss.knn(q, db, 10, faiss.METRIC_INNER_PRODUCT)[1] for name, q in queries.items()}
    train = db[np.random.default_rng(5).choice(n, min(n, 50_000), replace=False)]
    rows = []
    for dim in dims:
        for label, sample in (("centred", train), ("uncentred (+-x)", np.concatenate([train, -train]))):
            pca = faiss.PCAMatrix(db.shape[1], dim)
            pca.train(sample)
            projected = pca.apply(db)
            row = [n, f"PCA{dim}", label]
            for name, q in queries.items():
                cand = faiss.knn(pca.apply(q), projected, 64, faiss.METRIC_INNER_PRODUCT)[1]
                for r in (10, 32, 64):
                    best = [c[np.argsort(-(db[c[:r]] @ qi))[:10]] for c, qi in zip(cand, q)]
                    row.append(float(np.mean([len(set(b) & set(t)) / 10 for b, t in zip(best, truth[name])])))
            rows.append(row)
            print("   ", rows[-1], flush=True)
    return markdown_table(["vectors", "projection", "PCA training", "synthetic R=10", "R=32", "R=64",
                           "augmented real R=10", "R=32", "R=64"], rows)


def refine_main(args: argparse.Namespace) -> None:
    base, aug = cached_real(6)
    gauss = Gaussian(np.concatenate([base, aug]))
    if args.pca_check:
        print(pca_check(gauss, base, aug, args.pca_check, tuple(args.pca_dims)))
        return
    rows, fetch_rows = [], []
    for n in args.sizes or [1_000_000]:
        got, fetch_rows = refine_bench(gauss, base, aug, n, args.only, 300, args.skip_fetch,
                                       tuple(args.rerank_from))
        rows += got
    fetch = markdown_table(["full vectors from", "page cache", "vectors fetched (R)", "p50 ms", "p99 ms"],
                           [[r[0], r[1], r[2], f"{r[3]:.3f}", f"{r[4]:.3f}"] for r in fetch_rows])
    table = markdown_table(
        ["vectors", "index", "search param", "re-rank R", "full vectors", "p50 ms", "p99 ms",
         "recall@10 (synthetic)", "recall@10 (augmented real)", "index bytes/vector", "train s", "add s"], rows)
    body = ("## (c) Compressed candidates + exact re-rank of the top R with full vectors from disk\n\n"
            f"Database and queries as in (b) ({len(base)} real DEV embeddings + Gaussian draws, dim {base.shape[1]}). "
            "Latency: one query at a time, faiss on 1 thread, including the re-rank (fetch + dot products). "
            "Index bytes/vector = the serialized index (what the process holds in RAM); the full vectors are "
            "a file read through a memory map (page cache, not the process heap).\n\n"
            "### Fetch cost of full vectors by id\n\n" + fetch + "\n\n### Candidates\n\n" + table)
    command = "python benchmarks/catalog.py " + " ".join(sys.argv[1:])
    write_result(args.name or "catalog_1m_refine", "Catalog: 1M search with compressed index + re-rank", body, command)


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
    parser.add_argument("--refine", action="store_true", help="only (c): compressed candidates + exact re-rank "
                        "from full vectors on disk, at --sizes (default 1M); inputs and indexes cached under "
                        ".lookalike/bench-cache/catalog")
    parser.add_argument("--skip-fetch", action="store_true", help="with --refine: no fetch-cost table")
    parser.add_argument("--rerank-from", nargs="*", default=["f32 mmap"], help="with --refine: where the "
                        "re-rank reads full vectors: 'f32 mmap' and/or 'sqlite' (the catalog's Metadata.vectors)")
    parser.add_argument("--pca-dims", type=int, nargs="*", default=[128, 256])
    parser.add_argument("--pca-check", type=int, default=0, metavar="N", help="with --refine: only print the "
                        "centred vs uncentred PCA table on the first N database vectors")
    args = parser.parse_args()
    if args.refine:
        refine_main(args)
        return
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
                        "(same run)\n\n" + markdown_table(["engine", "local features stored", "images", "index_folder img/s",
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
