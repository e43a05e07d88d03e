"""What an image query costs once catalog search verifies and re-ranks its head by local features.

An image search embeds the query, asks the index for the top ``search_rerank_top`` hits, then
decodes each hit and matches local features against the query (``Catalog._verify``). With a cold
feature cache (a fresh server, or hits it has not seen) decoding and finding corners dominates, and
those run in OpenCV / Pillow without the GIL, so the hits are split over two cores
(``parallel.side_by_side``). This measures, interleaved in one run on one catalog of DEV photos:

- ``embedding order``: ``search_rerank_top = 0`` and no verification (``query_image=None``);
- ``re-rank, one core``: the hits checked in the calling thread only (the shared pool disabled,
  which is how a one-core machine runs it);
- ``re-rank, two cores``: as shipped;

each with the feature cache emptied before every query (cold) and kept (warm).

Run: ``nice -n 15 python benchmarks/search_rerank.py`` (builds the catalog once under
``.lookalike/bench-cache/search_rerank``; writes ``benchmarks/results/search_rerank.md``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_CACHE, DEV_DATA, REPO, markdown_table, percentile, write_result

import lookalike.parallel as parallel
from lookalike.catalog.catalog import Catalog
from lookalike.catalog.indexer import index_folder
from lookalike.config import Settings
from lookalike.imaging import content_hash

DATA = REPO / ".lookalike" / "bench-cache" / "search_rerank"
QUERIES = 24
ROUNDS = 2


def settings() -> Settings:
    weights = [BENCH_CACHE / "weights", DEV_DATA.parent / "weights"]
    return Settings(cache_dir=BENCH_CACHE, weights_dirs=[w for w in weights if w.is_dir()], allow_hub_download=False,
                    data_dir=DATA)


def catalog(config: Settings) -> Catalog:
    """The DEV photos (pairs and groups, about 680 images) indexed once."""
    cat = Catalog("dev", config)
    if len(cat) == 0:
        index_folder(DEV_DATA, cat)
    return cat


def one_query(cat: Catalog, data: bytes, *, verify: bool, cold: bool) -> float:
    if cold:
        with cat._features_lock:  # a benchmark may empty the cache the way a fresh process starts
            cat._features.clear()
    start = time.perf_counter()
    vector = cat.embedder().encode([data])
    cat.search(vector, 10, query_hash=content_hash(data), query_image=data if verify else None)
    return (time.perf_counter() - start) * 1000.0


def main() -> int:
    config = settings()
    cat = catalog(config)
    queries = [p.read_bytes() for p in sorted((DEV_DATA / "groups").rglob("*.jpg"))[:QUERIES]]
    one_query(cat, queries[0], verify=True, cold=True)  # load the model, warm the index
    pool = parallel._pool
    modes = {
        "embedding order": dict(verify=False, cores=2),
        "re-rank, one core": dict(verify=True, cores=1),
        "re-rank, two cores (shipped)": dict(verify=True, cores=2),
    }
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(ROUNDS):
            for data in queries:
                for cache in ("cold", "warm"):
                    for name, mode in modes.items():
                        parallel._pool = pool if mode["cores"] == 2 else (lambda: None)
                        if cache == "warm":  # the hits' features in memory, as on a repeated query
                            one_query(cat, data, verify=mode["verify"], cold=False)
                        ms = one_query(cat, data, verify=mode["verify"], cold=cache == "cold")
                        times.setdefault((name, cache), []).append(ms)
    finally:
        parallel._pool = pool
        cat.close()
    base = {cache: percentile(sorted(times[("embedding order", cache)]), 50) for cache in ("cold", "warm")}
    rows = []
    for (name, cache), values in times.items():
        ordered = sorted(values)
        p50 = percentile(ordered, 50)
        rows.append([name, cache, f"{p50:.0f}", f"{percentile(ordered, 95):.0f}", f"{p50 / base[cache]:.1f}x"])
    rows.sort(key=lambda r: (r[1], r[0]))
    body = "\n".join([
        f"Catalog: {len(Catalog('dev', config, create=False))} DEV photos; {len(queries)} group photos as queries, "
        f"{ROUNDS} rounds, modes interleaved per query; top 10 returned, head of "
        f"{config.search_rerank_top} verified and re-ranked (`search_rerank_top`).",
        "`cold`: the catalog's local-feature cache emptied before the query (every hit decoded and its",
        "corners found); `warm`: the same query just ran, so the hits' features are in memory.",
        "",
        markdown_table(["mode", "feature cache", "p50 ms", "p95 ms", "vs embedding order"], rows),
    ])
    write_result("search_rerank", "Image search with local-feature re-ranking: cost per query", body,
                 "nice -n 15 python benchmarks/search_rerank.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
