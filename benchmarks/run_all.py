"""Run every benchmark, then gather each one's goal rows into one summary table.

Each benchmark is its own script (``python benchmarks/<name>.py``) and writes
``benchmarks/results/<name>.md``; this runs them one after another in child processes (so one
benchmark's threads and memory never skew the next), then collects every markdown table that has
a ``goal`` column from the results into ``benchmarks/results/summary.md`` and into the table
between the markers in ``benchmarks/README.md``.

    python benchmarks/run_all.py                 # everything (about 30-40 minutes on 2 cores)
    python benchmarks/run_all.py --quick         # smaller runs of the same benchmarks
    python benchmarks/run_all.py --only pair_latency serving
    python benchmarks/run_all.py --summary-only  # re-gather the tables from existing results
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment, markdown_table

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN, END = "<!-- summary:begin -->", "<!-- summary:end -->"

# name -> (full-run arguments, --quick arguments); the order is the order they run in
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "pair_latency": ([], ["--rounds", "20"]),
    "backends": ([], ["--rounds", "10"]),
    "serving": ([], ["--repeats", "2", "--seconds", "3"]),
    "catalog": ([], ["--quick"]),
    "load": ([], ["--requests", "60"]),
    "scaling": ([], ["--images", "64", "--large", "16", "--no-ray"]),
    "accuracy": (["--quick"], ["--quick"]),
    "faults": ([], ["--trials", "3"]),
    "search_latency": ([], ["--rounds", "20", "--skip-100k"]),
    "dedup": ([], ["--limit", "40", "--variant", "ukbench"]),
}


def goal_rows(path: Path) -> list[list[str]]:
    """Rows of every table in ``path`` whose header has a ``goal`` column, as (measure, value, goal, met)."""
    rows: list[list[str]] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        header = [c.strip() for c in lines[i].strip().strip("|").split("|")] if lines[i].startswith("|") else []
        if header and any(h.lower() == "goal" for h in header) and i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            lower = [h.lower() for h in header]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                row = dict(zip(lower, cells))
                measure = row.get("measure") or cells[0]
                value = row.get("value") or (cells[1] if len(cells) > 1 else "")
                met = row.get("met") or row.get("ok") or row.get("pass") or ""
                rows.append([measure, value, row.get("goal", ""), met])
                i += 1
            continue
        i += 1
    return rows


def summarize() -> str:
    table = []
    for path in sorted(RESULTS.glob("*.md")):
        if path.stem == "summary":
            continue
        for measure, value, goal, met in goal_rows(path):
            table.append((f"[{path.stem}](results/{path.name})", measure, value, goal, met))
    return markdown_table(["benchmark", "measure", "value", "goal", "met"], table)


def write_summary(ran: dict[str, tuple[int, float]]) -> None:
    table = summarize()
    status = markdown_table(["benchmark", "exit code", "minutes"],
                            [(name, rc, f"{secs / 60:.1f}") for name, (rc, secs) in ran.items()]) if ran else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(
        f"# Benchmark summary\n\n{environment()}\n\nCommand: `python benchmarks/run_all.py "
        f"{' '.join(sys.argv[1:])}`\n\nEvery value is measured against its baseline in the same run of "
        "its benchmark; links go to the full tables.\n\n"
        + table.replace("(results/", "(") + "\n" + (f"\n## Runs\n\n{status}\n" if status else "")
    )
    if README.is_file():
        text = README.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            README.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs of every benchmark")
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--summary-only", action="store_true", help="do not run; gather existing results")
    args = parser.parse_args(argv)

    ran: dict[str, tuple[int, float]] = {}
    if not args.summary_only:
        for name, (full, quick) in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            script = HERE / f"{name}.py"
            if not script.is_file():
                print(f"-- skipping {name}: {script} not found")
                continue
            cmd = [sys.executable, str(script), *(quick if args.quick else full)]
            print(f"== {' '.join(cmd[1:])}", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call(cmd, cwd=str(HERE.parent))
            ran[name] = (rc, time.perf_counter() - t0)
            if rc:
                print(f"!! {name} exited with {rc}", flush=True)
    write_summary(ran)
    return 1 if any(rc for rc, _ in ran.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
