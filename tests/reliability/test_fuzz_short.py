"""A short atheris run of the decode path (~20 s): any non-LookalikeError exception fails CI.

The longer, documented run is in ``fuzz/fuzz_decode.py``'s docstring.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris not installed (pip install -e '.[fuzz]')")

HARNESS = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_decode.py"
SECONDS = int(os.environ.get("LOOKALIKE_FUZZ_SECONDS", "20"))
# The instrumented process's RSS grows with libFuzzer's corpus and coverage tables; one CI run hit
# 2.8 GB with 2048 as the limit while the flagged input itself decodes in ~30 MB (a 1.8 KB corrupt
# file refused as "corrupt animation"). 4096 keeps a real decompression bomb (GBs at once) a finding.
RSS_LIMIT_MB = int(os.environ.get("LOOKALIKE_FUZZ_RSS_MB", "4096"))


def test_decode_survives_a_short_fuzz_run(tmp_path):
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, str(HARNESS), "--seeds", str(corpus)], check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, str(HARNESS), str(corpus), f"-max_total_time={SECONDS}", f"-rss_limit_mb={RSS_LIMIT_MB}",
         "-timeout=10", "-seed=1", f"-artifact_prefix={tmp_path}/"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 120,
    )
    tail = run.stderr[-4000:]
    assert run.returncode == 0, f"fuzzer found a crash (artifacts in {tmp_path}):\n{tail}"
    assert "Done" in tail  # it really ran
