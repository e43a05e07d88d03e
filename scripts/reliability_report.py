"""Regenerate ``docs/reliability.md`` (and ``docs/bad_inputs.md``): every reliability figure, one command.

    python scripts/reliability_report.py            # corpus + reliability tests + 60 s fuzz; reuses the
                                                       # latest load/faults results (~3 min)
    python scripts/reliability_report.py --all      # also reruns benchmarks/load.py and faults.py (~10 min)
    python scripts/reliability_report.py --all --soak 10000   # and the 10k-request leak check (~10 more min)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import REPO, RESULTS, environment, markdown_table  # noqa: E402

DOCS = REPO / "docs"
PY = sys.executable


def run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def bad_inputs() -> tuple[str, list]:
    sys.path.insert(0, str(REPO))
    from tests.reliability.badinput_corpus import CORPUS_LIMITS, corpus_settings, write_table

    rows = write_table(corpus_settings(), DOCS / "bad_inputs.md")
    refused = [r for r in rows if r[1] != 200]
    statuses: dict[int, int] = {}
    for row in rows:
        statuses[row[1]] = statuses.get(row[1], 0) + 1
    fives = sum(n for s, n in statuses.items() if s >= 500)
    text = (f"{len(rows)} inputs sent through `POST /v1/compare` (limits {CORPUS_LIMITS}): {len(refused)} refused "
            "with a "
            f"specific 4xx JSON code, {len(rows) - len(refused)} odd-but-valid images accepted with the right verdict, "
            f"**{fives} answers 5xx**. Status counts: "
            + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
            + ". Full table: [bad_inputs.md](bad_inputs.md).")
    table = markdown_table(["input", "status", "code", "message / outcome"], rows)
    return text + "\n\n" + table, rows


def reliability_tests() -> str:
    junit = RESULTS / "reliability-junit.xml"
    t0 = time.perf_counter()
    done = run([PY, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"], 1800)
    wall = time.perf_counter() - t0
    groups: dict[str, list] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "skipped" if case.find("skipped") is not None else \
            "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
        entry = groups.setdefault(module, [0, 0, 0, 0.0])
        entry[["passed", "failed", "skipped"].index(outcome)] += 1
        entry[3] += float(case.get("time", 0))
    junit.unlink(missing_ok=True)
    rows = [(m, p, f, s, round(t, 1)) for m, (p, f, s, t) in sorted(groups.items())]
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    return (f"`pytest tests/reliability` (what CI runs): **{tail}**, {wall:.0f} s wall.\n\n"
            + markdown_table(["test module", "passed", "failed", "skipped", "seconds"], rows))


def fuzz(seconds: int) -> str:
    corpus = REPO / ".lookalike" / "fuzz-corpus"
    run([PY, "fuzz/fuzz_decode.py", "--seeds", str(corpus)], 120)
    done = run([PY, "fuzz/fuzz_decode.py", str(corpus), f"-max_total_time={seconds}", "-rss_limit_mb=2048",
                "-timeout=10", f"-artifact_prefix={REPO / '.lookalike'}/"], seconds + 300)
    if "No module named 'atheris'" in done.stderr:
        return "atheris not installed (`pip install -e '.[fuzz]'`): fuzzing skipped."
    runs = re.search(r"Done (\d+) runs in (\d+) second", done.stderr)
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", done.stderr)
    crashed = done.returncode != 0
    last = cov[-1] if cov else ("?", "?", "?")
    verdict = "a CRASH (see .lookalike/crash-*)" if crashed else "0 crashes"
    return (f"atheris on `imaging.decode` + the crop transform ({seconds} s, seeds: 13 small files of every accepted "
            f"format): **{runs.group(1) if runs else '?'} inputs, {verdict}**, "
            f"coverage {last[0]} edges / {last[1]} features, corpus grown to {last[2]} files. Longer run: see "
            "`fuzz/fuzz_decode.py`.")


def load_section(rerun: bool, soak: int) -> str:
    if rerun:
        run([PY, "benchmarks/load.py"], 1200)
    if soak:
        run([PY, "benchmarks/load.py", "--soak", str(soak)], 3600)
    parts = []
    for name in ("load", "load_soak"):
        path = RESULTS / f"{name}.md"
        if path.is_file():
            text = path.read_text().split("\n", 2)[2].strip()  # drop the title
            parts.append(f"### {name.replace('_', ' ')} (`benchmarks/results/{name}.md`)\n\n{text}")
        else:
            parts.append(f"### {name}\n\nnot measured yet: `python benchmarks/load.py"
                         f"{' --soak 10000' if name == 'load_soak' else ''}`")
    return "\n\n".join(parts)


def faults_section(rerun: bool) -> str:
    if rerun:
        run([PY, "benchmarks/faults.py", "--trials", "20"], 3000)
    path = RESULTS / "faults.md"
    if not path.is_file():
        return "not measured yet: `python benchmarks/faults.py --trials 20`"
    return path.read_text().split("\n", 2)[2].strip().replace("\n## ", "\n### ")


def limits_section() -> str:
    from lookalike.config import Settings
    from lookalike.imaging import ACCEPTED_FORMATS, ImageLimits

    fields = Settings.model_fields
    names = ["max_upload_bytes", "max_request_bytes", "max_pixels", "max_frames", "request_timeout_s",
             "rate_limit_per_minute", "max_queue", "api_key", "protect_reads", "cors_origins"]
    rows = [(f"`{n}`", fields[n].default, fields[n].description) for n in names if n in fields]
    limits = ImageLimits()
    rows += [("min side (ImageLimits)", limits.min_side, "short side below this: 422 `image_too_small`"),
             ("max aspect (ImageLimits)", limits.max_aspect, "longer/shorter side above this: 422 `bad_aspect_ratio`"),
             ("accepted formats", ", ".join(sorted(ACCEPTED_FORMATS)), "anything else Pillow could open: 422 "
                                                                        "`unsupported_format`")]
    return markdown_table(["setting (LOOKALIKE_*)", "default", "what it does"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="rerun the load and fault benchmarks too")
    parser.add_argument("--soak", type=int, default=0, help="also run the N-request soak")
    parser.add_argument("--fuzz-seconds", type=int, default=60)
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = environment()
    corpus_text, _ = bad_inputs()
    sections = [
        "# Reliability and security: figures",
        "",
        f"Regenerated by `python scripts/reliability_report.py{' --all' if args.all else ''}`. {started}",
        "",
        "## 1. Guards and their settings",
        "",
        "Checked before any pixel is decoded (like imgproxy/thumbor): bytes while streaming (413 from "
        "`Content-Length`, or once a chunked body passes `max_request_bytes`), per-file bytes, pixel count, "
        "frame count, side and aspect ratio; then a per-request processing timeout (504), an optional per-client "
        "token bucket (429 + Retry-After), the inference queue (503 + Retry-After). Write endpoints need "
        "`X-API-Key` when `api_key` is set (constant-time compare), reads too with `protect_reads`; CORS is off "
        "unless `cors_origins` lists origins; every response carries `X-Content-Type-Options: nosniff`. A full "
        "disk answers 507 `storage_full`, read-only storage 503 `storage_*`.",
        "",
        limits_section(),
        "",
        "## 2. Bad-input corpus",
        "",
        corpus_text,
        "",
        "## 3. Tests: access control, streaming limits, schemathesis, short fuzz",
        "",
        reliability_tests(),
        "",
        "## 4. Fuzzing the decoder",
        "",
        fuzz(args.fuzz_seconds),
        "",
        "## 5. Load",
        "",
        load_section(args.all, args.soak),
        "",
        "## 6. Faults",
        "",
        faults_section(args.all),
        "",
    ]
    out = DOCS / "reliability.md"
    out.write_text("\n".join(sections))
    print(f"wrote {out} and {DOCS / 'bad_inputs.md'}")


if __name__ == "__main__":
    main()
