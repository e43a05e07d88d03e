"""Which SSCD dedup lines: candidate cosine, sure cosine and the copy check's rules, on a real catalog.

Builds each DEV transformed set (``datasets.transformed_copies``, seed 12 as ``dedup.py``), indexes it
once into a ``sscd_distilled`` catalog with its local features stored (as ``lookalike dedup FOLDER``
does), then runs ``find_duplicates`` with each setting and scores the pairs as ``dedup.py`` does.
Prints one line per setting (the table in ``results/dedup.md``). The first row is the shipped setting.

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

# (label, candidate cosine, sure cosine, overrides of lookalike.catalog.dedup's check constants)
SETTINGS = [
    ("shipped", 0.35, 1.0, {}),
    ("score alone from 0.85 (the old sure line)", 0.35, 0.85, {}),
    ("no worst-block rule", 0.35, 1.0, {"COPY_WORST_BLOCK": -1.0}),
    ("no own-copies-first rule", 0.35, 1.0, {"OWN_COPY_MARGIN": 10.0}),
    ("own-copies margin 0.2", 0.35, 1.0, {"OWN_COPY_MARGIN": 0.2}),
    ("whole-overlap NCC 0.9", 0.35, 1.0, {"COPY_NCC": 0.9}),
    ("no mirror round", 0.35, 1.0, {"MIRROR_COSINE": 2.0}),
    ("mirror from cosine 0.7", 0.35, 1.0, {"MIRROR_COSINE": 0.7}),
    ("candidate line 0.45", 0.45, 1.0, {}),
    # how the mirror's corners are found (dedup.MIRROR_*): the previous round's 2x / threshold 10 / 8 levels
    ("mirror corners at 2x, threshold 10, 8 levels", 0.35, 1.0,
     {"MIRROR_ENLARGE": 2.0, "MIRROR_FAST_THRESHOLD": 10, "MIRROR_LEVELS": 8}),
    ("mirror corners on the half-size grey, 3 levels", 0.35, 1.0, {"MIRROR_ENLARGE": 1.0, "MIRROR_LEVELS": 3}),
]


def main() -> None:
    import lookalike.catalog.dedup as dedup
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder

    shipped = {name: getattr(dedup, name) for _, _, _, overrides in SETTINGS for name in overrides}
    lines = dedup.SSCD_LINES
    groups = dev_groups(DEV_DATA)
    print("| variant | setting | candidate cos | sure cos | pairs checked | dedup s (index s) | precision | recall | "
          "recall per edit | other shots called copy |\n|---|---|---|---|---|---|---|---|---|---|")
    for variant in ("ukbench", "hard"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            items = transformed_copies(dev_originals(DEV_DATA), folder, variant, seed=12)
            settings = bench_settings(data_dir=Path(tmp) / "data", index_local_features=True)
            with Catalog("lines", settings, model="sscd_distilled") as catalog:
                started = time.perf_counter()
                index_folder(folder, catalog)
                index_s = time.perf_counter() - started
                for label, candidate, sure, overrides in SETTINGS:
                    dedup.SSCD_LINES = dedup.DedupLines(candidate, sure, lines.neighbours)
                    for name, value in shipped.items():
                        setattr(dedup, name, overrides.get(name, value))
                    started = time.perf_counter()
                    report = dedup.find_duplicates(catalog)
                    dedup_s = time.perf_counter() - started
                    pairs = [[a.path, b.path] for c in report.clusters for a, b in itertools.combinations(c.members, 2)]
                    f = bench.score(items, pairs, groups)
                    edits = ", ".join(f"{k[7:]} {v:.2f}" for k, v in f.items() if k.startswith("recall_"))
                    print(f"| {variant} | {label} | {candidate} | {sure} | {report.stats['checked']} | {dedup_s:.1f} "
                          f"({index_s:.1f}) | {f['precision']:.3f} | {f['recall']:.3f} | {edits} | "
                          f"{f['other_shots_called_copy']:.3f} |", flush=True)
    dedup.SSCD_LINES = lines


if __name__ == "__main__":
    main()
