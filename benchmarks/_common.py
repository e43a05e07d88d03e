"""Shared helpers for every benchmark: timing, percentiles, the environment line, markdown tables.

Every figure in ``benchmarks/results/`` is a ratio against a baseline measured in the same run
on the same machine (the CPU is shared, so absolute numbers drift between runs). Benchmarks
import this module as ``from _common import ...`` (run them as ``python benchmarks/<name>.py``).
"""

from __future__ import annotations

import csv
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RESEARCH_RESULTS = REPO / "benchmarks" / "research" / "results"
SHARED = Path(os.environ.get("LOOKALIKE_SHARED_DIR", REPO.parent / "shared"))
DEV_DATA = SHARED / "data"
# Benchmarks share the test suite's export cache: exporting is slow and not what is measured.
BENCH_CACHE = Path(os.environ.get("LOOKALIKE_TEST_CACHE", REPO / ".lookalike" / "test-cache"))


@dataclass(frozen=True)
class Stats:
    """Latency summary of one measured loop, in milliseconds."""

    n: int
    p50: float
    p95: float
    mean: float
    min: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Stats:
        ordered = sorted(samples_ms)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 95), statistics.fmean(ordered), ordered[0])


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted sequence (numpy's default method)."""
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def time_calls(fn: Callable[[int], object], n: int, warmup: int = 3) -> Stats:
    """Call ``fn(i)`` ``warmup`` times untimed, then ``n`` times timed; ``i`` lets callers vary input."""
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(warmup + i)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return Stats.of(samples)


def interleaved(fns: dict[str, Callable[[int], object]], rounds: int, warmup: int = 3,
                block: int = 1) -> dict[str, Stats]:
    """Time several contenders round-robin, so load from other processes hits them all alike.

    ``block`` > 1: each turn makes ``block`` calls and times all but the first, which absorbs the
    switch from the previous contender (engines whose idle threads still spin, cold caches).
    """
    for i in range(warmup):
        for fn in fns.values():
            fn(i)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            for j in range(block):
                t0 = time.perf_counter()
                fn(warmup + r * block + j)
                if j or block == 1:
                    samples[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: Stats.of(values) for name, values in samples.items()}


def environment() -> str:
    """One line that says where and when a result was measured."""
    try:
        load = "load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load avg n/a"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{when} · {cpu} · {os.cpu_count()} cores · {load} at start · Python {platform.python_version()} · "
            "the CPU is shared with other processes, so compare figures only within one run")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, body: str, command: str, *, folder: Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>.md`` (atomically) and echo it to stdout."""
    folder = folder or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    text = f"# {title}\n\n{environment()}\n\nCommand: `{command}`\n\n{body.strip()}\n"
    path = folder / f"{name}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(text)
    return path


def write_research_result(name: str, title: str, body: str, command: str) -> Path:
    """A research record's result: ``benchmarks/research/results/<name>.md``."""
    return write_result(name, title, body, command, folder=RESEARCH_RESULTS)


def bench_settings(**overrides):
    """Offline settings on the shared export cache (real weights, no hub)."""
    from lookalike.config import Settings

    weights_dirs = [BENCH_CACHE / "weights"]
    if (SHARED / "weights").is_dir():
        weights_dirs.append(SHARED / "weights")
    values = {"cache_dir": BENCH_CACHE, "weights_dirs": weights_dirs, "allow_hub_download": False,
              "calibration_file": None}
    values.update(overrides)
    return Settings(**values)


def bench_env(**overrides: object) -> dict[str, str]:
    """Environment for a server child process with the same settings as ``bench_settings``."""
    env = dict(os.environ)
    weights_dirs = [str(BENCH_CACHE / "weights")]
    if (SHARED / "weights").is_dir():
        weights_dirs.append(str(SHARED / "weights"))
    env.update(
        LOOKALIKE_CACHE_DIR=str(BENCH_CACHE),
        LOOKALIKE_WEIGHTS_DIRS=os.pathsep.join(weights_dirs),
        LOOKALIKE_ALLOW_HUB_DOWNLOAD="false",
        LOOKALIKE_CONFIG="none",  # no config file: only these settings
    )
    env.update({f"LOOKALIKE_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def dev_images(limit: int | None = None) -> list[Path]:
    """Real photos of the DEV set (JPEG), sorted; exits with a message when the set is absent."""
    pairs = DEV_DATA / "pairs.csv"
    if not pairs.is_file():
        sys.exit(f"DEV data not found at {DEV_DATA}: this benchmark needs real photos")
    seen: dict[Path, None] = {}
    with pairs.open() as fh:
        for row in csv.DictReader(fh):
            for key in ("path_a", "path_b"):
                path = (DEV_DATA / row[key]).resolve()
                if path.suffix.lower() in (".jpg", ".jpeg"):
                    seen[path] = None
    paths = sorted(seen)
    return paths[:limit] if limit else paths


def dev_pairs() -> list[tuple[Path, Path, int]]:
    rows = []
    with (DEV_DATA / "pairs.csv").open() as fh:
        for row in csv.DictReader(fh):
            rows.append(((DEV_DATA / row["path_a"]).resolve(), (DEV_DATA / row["path_b"]).resolve(), int(row["label"])))
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``lookalike serve`` in a child process on loopback; ``started_s`` = spawn to ``/healthz`` OK."""

    def __init__(self, *, preload: bool = True, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(Path(sys.executable).parent / "lookalike"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--preload" if preload else "--no-preload"]
        self.t0 = time.perf_counter()
        # a file, not a pipe: nobody drains a pipe during a benchmark, and a full one blocks the server
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(cmd, env=bench_env(**settings), stdout=subprocess.DEVNULL,
                                     stderr=self.log, cwd=str(REPO))
        self.started_s = self._wait_healthy()

    def _wait_healthy(self, timeout: float = 120.0) -> float:
        import httpx

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return time.perf_counter() - self.t0
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        self.close()
        raise RuntimeError("server did not become healthy in time")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far, all threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mapped_libraries(self) -> set[str]:
        """Shared objects mapped into the server (shows whether torch was ever imported)."""
        names = set()
        for line in Path(f"/proc/{self.proc.pid}/maps").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 6 and ".so" in parts[-1]:
                names.add(Path(parts[-1]).name)
        return names

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> Server:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
