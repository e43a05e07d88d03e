"""Which SSCD dedup lines: candidate cosine, sure cosine and the copy check's NCC, on a real catalog.

Builds each DEV transformed set (``datasets.transformed_copies``, seed 12 as ``dedup.py``), indexes it
once into a ``sscd_distilled`` catalog, then runs ``find_duplicates`` with each setting and scores the
pairs as ``dedup.py`` does. Prints one line per setting (the table in ``results/dedup.md``).

    python benchmarks/dedup_lines.py
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedup as bench  # noqa: E402
from _common import DEV_DATA, bench_settings  # noqa: E402
from datasets import dev_groups, dev_originals, transformed_copies  # noqa: E402

SETTINGS = [(0.35, 0.85, 0.9), (0.35, 0.75, 0.9), (0.35, 0.92, 0.9), (0.45, 0.85, 0.9), (0.35, 0.85, 0.93)]


def main() -> None:
    import lookalike.catalog.dedup as dedup
    import lookalike.geometry as geometry
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder

    groups = dev_groups(DEV_DATA)
    print("| variant | candidate cos | sure cos | check NCC | pairs checked | dedup s (index s) | precision | recall | "
          "recall per edit | other shots called copy |\n|---|---|---|---|---|---|---|---|---|---|")
    for variant in ("ukbench", "hard"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            items = transformed_copies(dev_originals(DEV_DATA), folder, variant, seed=12)
            with Catalog("lines", bench_settings(data_dir=Path(tmp) / "data"), model="sscd_distilled") as catalog:
                started = time.perf_counter()
                index_folder(folder, catalog)
                index_s = time.perf_counter() - started
                for candidate, sure, ncc in SETTINGS:
                    dedup.SSCD_LINES = dedup.CopyLines(candidate, sure, dedup.SSCD_LINES.neighbours)
                    geometry.DEDUP_COPY = (geometry.DEDUP_COPY[0], ncc)
                    started = time.perf_counter()
                    report = dedup.find_duplicates(catalog)
                    dedup_s = time.perf_counter() - started
                    pairs = [[a.path, b.path] for c in report.clusters for a, b in itertools.combinations(c.members, 2)]
                    f = bench.score(items, pairs, groups)
                    edits = ", ".join(f"{k[7:]} {v:.2f}" for k, v in f.items() if k.startswith("recall_"))
                    print(f"| {variant} | {candidate} | {sure} | {ncc} | {report.stats['checked']} | {dedup_s:.1f} "
                          f"({index_s:.1f}) | {f['precision']:.3f} | {f['recall']:.3f} | {edits} | "
                          f"{f['other_shots_called_copy']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
