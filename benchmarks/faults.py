"""Faults: kill -9 mid-write, a full disk, a read-only catalog folder. Nothing acknowledged may be lost.

1. **server**: ``lookalike serve`` on 127.0.0.1 takes a stream of uploads (and some deletes) into one
   catalog; after a random delay it gets SIGKILL. The catalog is then reopened: SQLite must pass
   ``PRAGMA integrity_check``, the index must agree with SQLite (``Catalog.check_consistency``),
   every upload answered 200 must be there with its original file (bytes hash-checked), every
   delete answered 200 must be gone.
2. **indexer**: ``lookalike index`` over a folder that grows by a few photos per trial gets SIGKILL
   at a random moment (start-up, embedding, committing). Reopen and check as above; every committed
   row's file must match its hash; a final uninterrupted run must leave exactly one row per file.
3. **full disk**: the data dir on a loop-mounted 3 MB ext4 (falls back to ``ulimit -f`` without
   mount rights): uploads until the disk is full must end in a clear 507 JSON, reads keep working,
   and the catalog reopens consistent.
4. **read-only**: the same filesystem remounted read-only under the running server: adds answer
   a clear 503 JSON, searches keep working, nothing is corrupted.

    python benchmarks/faults.py [--trials 20]          # ~4-6 minutes on 2 cores

Writes ``benchmarks/results/faults.md`` and ``faults.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, Server, bench_env, bench_settings, markdown_table, write_result  # noqa: E402

CATALOG = "faults"


# --- inputs ------------------------------------------------------------------------------------


class Photos:
    """An endless supply of distinct real-photo JPEGs (sample photos + a random coloured patch)."""

    def __init__(self, seed: int = 0) -> None:
        import numpy as np
        from PIL import Image
        from skimage import data as skdata
        from sklearn.datasets import load_sample_image

        arrays = [load_sample_image("china.jpg"), load_sample_image("flower.jpg"), skdata.astronaut(),
                  skdata.chelsea(), skdata.coffee(), skdata.rocket()]
        self.bases = [np.asarray(Image.fromarray(a).resize((320, 240))) for a in arrays]
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()

    def next(self) -> bytes:
        from PIL import Image

        with self.lock:
            base = self.bases[int(self.rng.integers(len(self.bases)))].copy()
            y, x = int(self.rng.integers(0, 200)), int(self.rng.integers(0, 280))
            base[y : y + 24, x : x + 24] = self.rng.integers(0, 255, 3)
        buffer = io.BytesIO()
        Image.fromarray(base).save(buffer, "JPEG", quality=85)
        return buffer.getvalue()


# --- checks ------------------------------------------------------------------------------------


@dataclass
class Check:
    ok: bool
    rows: int
    problems: list[str] = field(default_factory=list)


def check_catalog(data_dir: Path, acked_adds: dict[str, int] | None = None, acked_deletes: set[int] | None = None,
                  folder_files: bool = False) -> Check:
    """Reopen the catalog the way the server would, then verify it from every side."""
    from lookalike.catalog.catalog import DB_FILE, Catalog, catalog_dir
    from lookalike.imaging import content_hash

    settings = bench_settings(data_dir=data_dir)
    root = catalog_dir(CATALOG, settings)
    problems: list[str] = []
    if not (root / DB_FILE).is_file():
        return Check(not acked_adds, 0, [] if not acked_adds else ["catalog missing but writes were acknowledged"])
    with sqlite3.connect(root / DB_FILE) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"integrity_check: {result}")
    try:
        catalog = Catalog(CATALOG, settings, create=False)
    except Exception as exc:  # noqa: BLE001 - any failure to reopen is the finding
        return Check(False, 0, problems + [f"reopen failed: {type(exc).__name__}: {exc}"])
    try:
        try:
            catalog.check_consistency()
        except AssertionError as exc:
            problems.append(f"index vs SQLite: {exc}")
        rows = len(catalog)
        for digest, image_id in (acked_adds or {}).items():
            record = catalog.meta.by_hash(digest)
            if record is None:
                problems.append(f"acknowledged upload {image_id} ({digest[:8]}) lost")
            elif record.path and (not Path(record.path).is_file()
                                  or content_hash(Path(record.path).read_bytes()) != digest):
                problems.append(f"original file of {image_id} missing or altered")
        for image_id in acked_deletes or ():
            if catalog.meta.get(image_id) is not None:
                problems.append(f"acknowledged delete {image_id} came back")
        if folder_files:
            for record in catalog.meta.records():
                path = Path(record.path or "")
                if not path.is_file() or content_hash(path.read_bytes()) != record.content_hash:
                    problems.append(f"row {record.id} does not match its file")
    finally:
        catalog.close()
    return Check(not problems, rows, problems)


# --- 1. kill -9 of the server during writes -------------------------------------------------


@dataclass
class Trial:
    kind: str
    trial: int
    kill_after_s: float
    acked_adds: int
    acked_deletes: int
    rows_before: int
    rows_after: int
    ok: bool
    problems: list[str]
    phase: str = "during uploads"


def server_trial(index: int, data_dir: Path, photos: Photos, rng: random.Random,
                 acked_adds: dict[str, int], acked_deletes: set[int]) -> Trial:
    """One kill; ``acked_*`` accumulate over all trials, so an earlier acknowledgement stays checked."""
    import httpx

    adds_before, deletes_before = len(acked_adds), len(acked_deletes)
    in_flight: dict[str, int] = {}  # a delete sent but never answered may or may not have happened
    stop = threading.Event()
    rows_before = check_catalog(data_dir).rows
    server = Server(data_dir=str(data_dir))
    url = f"{server.url}/v1/catalogs/{CATALOG}/images"
    first_ack = threading.Event()

    def writer() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    if acked_adds and rng.random() < 0.2:
                        digest, image_id = rng.choice(sorted(acked_adds.items()))
                        in_flight[digest] = image_id
                        if http.delete(f"{url}/{image_id}").status_code == 200:
                            acked_deletes.add(image_id)
                            acked_adds.pop(digest, None)
                        in_flight.pop(digest, None)
                        continue
                    count = rng.choice((1, 1, 3))
                    files = [("files", (f"p{i}.jpg", photos.next(), "image/jpeg")) for i in range(count)]
                    response = http.post(url, files=files)
                    if response.status_code == 200:
                        for item in response.json()["added"]:
                            acked_adds[item["content_hash"]] = item["id"]
                        first_ack.set()
                except httpx.HTTPError:
                    return  # the server is gone: whatever was in flight was never acknowledged

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    first_ack.wait(60)
    delay = rng.uniform(0.05, 2.5)
    time.sleep(delay)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    stop.set()
    thread.join(30)
    for digest in in_flight:
        acked_adds.pop(digest, None)  # its upload was acknowledged, its deletion maybe done: either is fine
    check = check_catalog(data_dir, dict(acked_adds), set(acked_deletes))
    return Trial("server", index, round(delay, 2), len(acked_adds) - adds_before + len(acked_deletes) - deletes_before,
                 len(acked_deletes) - deletes_before, rows_before, check.rows, check.ok, check.problems)


# --- 2. kill -9 of `lookalike index` ------------------------------------------------------------


NEW_PER_TRIAL = 40
COMMIT_EVERY = 8  # small batches: a kill usually lands between two commits, not before the first


def index_trial(index: int, data_dir: Path, folder: Path, photos: Photos, rng: random.Random, full_s: float) -> Trial:
    """Kill ``lookalike index`` at a random fraction of a full run's time (start-up included)."""
    for _ in range(NEW_PER_TRIAL):  # new work every trial
        (folder / f"img_{index:03d}_{rng.randrange(10**9):09d}.jpg").write_bytes(photos.next())
    rows_before = check_catalog(data_dir).rows
    process = subprocess.Popen(index_command(folder), env=index_env(data_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    delay = rng.uniform(0.4, 1.6) * full_s
    time.sleep(delay)
    finished = process.poll() is not None
    if not finished:
        process.send_signal(signal.SIGKILL)
    process.wait()
    check = check_catalog(data_dir, folder_files=True)
    phase = ("finished before the kill" if finished else
             "killed before its first commit" if check.rows == rows_before else "killed mid-run (some committed)")
    return Trial("index", index, round(delay, 2), 0, 0, rows_before, check.rows, check.ok, check.problems, phase)


def index_env(data_dir: Path) -> dict[str, str]:
    return bench_env(data_dir=data_dir, catalog_commit_every=COMMIT_EVERY)


def index_command(folder: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "lookalike"), "index", str(folder), "--catalog", CATALOG, "--json"]


def timed_full_index(data_dir: Path, folder: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(index_command(folder), env=index_env(data_dir), capture_output=True, timeout=600, check=True)
    return time.perf_counter() - t0


def final_index_run(data_dir: Path, folder: Path) -> tuple[bool, str]:
    done = subprocess.run(index_command(folder), env=index_env(data_dir), capture_output=True, text=True,
                          timeout=600)
    files = len(list(folder.glob("*.jpg")))
    check = check_catalog(data_dir, folder_files=True)
    ok = done.returncode == 0 and check.ok and check.rows == files
    return ok, f"{check.rows} rows for {files} files after an uninterrupted run; problems: {check.problems or 'none'}"


# --- 3./4. full disk and read-only -------------------------------------------------------------


class SmallFilesystem:
    """A loop-mounted ext4 of a few MB (needs mount rights); ``None`` from ``make`` when unavailable."""

    def __init__(self, size_mb: int, workdir: Path) -> None:
        self.image = workdir / "small.img"
        self.mount = workdir / "mnt"

    @classmethod
    def make(cls, size_mb: int, workdir: Path) -> "SmallFilesystem | None":
        fs = cls(size_mb, workdir)
        fs.mount.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["truncate", "-s", f"{size_mb}M", str(fs.image)], check=True, capture_output=True)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(fs.image)], check=True, capture_output=True)
            subprocess.run(["mount", "-o", "loop", str(fs.image), str(fs.mount)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return fs

    def remount(self, mode: str) -> bool:
        done = subprocess.run(["mount", "-o", f"remount,{mode}", str(self.mount)], capture_output=True)
        return done.returncode == 0

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)


@dataclass
class Outcome:
    scenario: str
    method: str
    answers: str
    reads_after: str
    consistent: bool
    detail: str


def fill_until_full(url: str, photos: Photos, limit: int = 400) -> tuple[list[int], dict[str, int], dict]:
    import httpx

    statuses, acked, last = [], {}, {}
    codes: list[str] = []
    with httpx.Client(timeout=60) as http:
        for i in range(limit):
            try:
                response = http.post(f"{url}/v1/catalogs/{CATALOG}/images",
                                     files=[("files", (f"f{i}.jpg", photos.next() + os.urandom(30_000), "image/jpeg"))])
            except httpx.HTTPError as exc:  # a dropped connection is a finding, not a crash of the benchmark
                statuses.append(-1)
                last = {"status": -1, "code": "connection_error", "detail": str(exc)}
                break
            statuses.append(response.status_code)
            if response.status_code == 200:
                for item in response.json()["added"]:
                    acked[item["content_hash"]] = item["id"]
                continue
            last = {"status": response.status_code, **response.json()}
            codes.append(last.get("code", ""))
            if len(statuses) >= 3 and statuses[-3:] == [response.status_code] * 3:
                break
    last["codes"] = codes
    return statuses, acked, last


def reads_work(url: str, photos: Photos) -> str:
    import httpx

    listing = httpx.get(f"{url}/v1/catalogs", timeout=30).status_code
    search = httpx.post(f"{url}/v1/catalogs/{CATALOG}/search", files={"image": ("q.jpg", photos.next(), "image/jpeg")},
                        timeout=60).status_code
    return f"list {listing}, search {search}"


def full_disk(workdir: Path, photos: Photos) -> Outcome:
    fs = SmallFilesystem.make(3, workdir)
    if fs is not None:
        method, data_dir = "loop-mounted 3 MB ext4", fs.mount / "data"
        ballast = fs.mount / "ballast.bin"  # freed afterwards, as an operator would
        ballast.write_bytes(os.urandom(256 * 1024))
        server = Server(data_dir=str(data_dir))
    else:  # no mount rights: cap the server's file size instead (writes past it fail with EFBIG)
        import resource

        method, data_dir = "ulimit -f 2 MB (no mount rights)", workdir / "ulimit-data"
        limit = 2 * 1024 * 1024
        original = subprocess.Popen

        def limited(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            kwargs["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            return original(*args, **kwargs)

        subprocess.Popen = limited  # type: ignore[misc]
        try:
            server = Server(data_dir=str(data_dir))
        finally:
            subprocess.Popen = original  # type: ignore[misc]
    try:
        try:
            statuses, acked, last = fill_until_full(server.url, photos)
            reads = reads_work(server.url, photos)
        finally:
            server.close()
        if fs is not None:
            ballast.unlink()
        check = check_catalog(data_dir, acked)
    finally:
        if fs is not None:
            fs.close()
    refusals = ", ".join(f"{s}" for s in statuses if s != 200)
    answers = (f"{statuses.count(200)} x 200, then [{refusals}] codes {sorted(set(last['codes']))}: "
               f"{last.get('detail')}")
    clear = bool(last["codes"]) and all(code.startswith("storage") for code in last["codes"])
    return Outcome("full disk", method, answers, reads, check.ok and clear,
                   f"{check.rows} rows; acknowledged {len(acked)}; problems: {check.problems or 'none'}")


def read_only(workdir: Path, photos: Photos) -> Outcome:
    fs = SmallFilesystem.make(32, workdir / "ro")
    if fs is None:
        return Outcome("read-only catalog dir", "skipped: needs mount rights (root ignores chmod)", "-", "-", True, "")
    import httpx

    data_dir = fs.mount / "data"
    try:
        with Server(data_dir=str(data_dir)) as writer:  # a catalog with a few images, then a clean stop
            _, acked, _ = fill_until_full(writer.url, photos, limit=5)
    except BaseException:
        fs.close()
        raise
    if not fs.remount("ro"):
        fs.close()
        return Outcome("read-only catalog dir", "skipped: remount read-only failed", "-", "-", True, "")
    try:
        with Server(data_dir=str(data_dir)) as server:
            response = httpx.post(f"{server.url}/v1/catalogs/{CATALOG}/images", timeout=60,
                                  files=[("files", ("ro.jpg", photos.next(), "image/jpeg"))])
            body = response.json()
            victim = next(iter(acked.values()))
            deleted = httpx.delete(f"{server.url}/v1/catalogs/{CATALOG}/images/{victim}", timeout=60)
            reads = reads_work(server.url, photos)
    finally:
        fs.remount("rw")  # the operator fixes the mount; then nothing may be lost or corrupt
    try:
        check = check_catalog(data_dir, acked)
    finally:
        fs.close()
    answers = (f"add -> {response.status_code} `{body.get('code')}`: {body.get('detail')}; "
               f"delete -> {deleted.status_code} `{deleted.json().get('code')}`")
    clear = all(r.status_code == 503 and r.json().get("code", "").startswith("storage") for r in (response, deleted))
    return Outcome("read-only catalog dir", "catalog on a loop-mounted ext4, server restarted on it mounted ro",
                   answers, reads, check.ok and clear, f"{check.rows} rows; problems: {check.problems or 'none'}")


# --- report ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="kill -9 trials per target (server, indexer)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    photos = Photos(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="lookalike-faults-"))
    trials: list[Trial] = []
    try:
        server_dir = workdir / "server-data"
        acked_adds: dict[str, int] = {}
        acked_deletes: set[int] = set()
        for i in range(args.trials):
            trials.append(server_trial(i, server_dir, photos, rng, acked_adds, acked_deletes))
            print(asdict(trials[-1]), flush=True)
        index_dir, folder = workdir / "index-data", workdir / "photos"
        folder.mkdir()
        for _ in range(NEW_PER_TRIAL):
            (folder / f"seed_{rng.randrange(10**9):09d}.jpg").write_bytes(photos.next())
        full_s = timed_full_index(index_dir, folder)  # start-up + NEW_PER_TRIAL photos: the kill window
        print(f"full index run of {NEW_PER_TRIAL} new photos: {full_s:.1f} s", flush=True)
        for i in range(args.trials):
            trials.append(index_trial(i, index_dir, folder, photos, rng, full_s))
            print(asdict(trials[-1]), flush=True)
        final_ok, final_detail = final_index_run(index_dir, folder)
        outcomes = [full_disk(workdir, photos), read_only(workdir, photos)]
        for outcome in outcomes:
            print(asdict(outcome), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def summary(kind: str) -> tuple:
        mine = [t for t in trials if t.kind == kind]
        grew = sum(1 for t in mine if t.rows_after != t.rows_before)
        return kind, len(mine), sum(t.ok for t in mine), grew, sum(t.acked_adds for t in mine), \
            sum(t.acked_deletes for t in mine), sum(len(t.problems) for t in mine)

    # acked adds of a trial = uploads answered 200 in it (some later deleted, also acknowledged);
    # every check covers all acknowledgements so far, not just the latest trial's

    summaries = [summary("server"), summary("index")]
    phases: dict[str, int] = {}
    for t in trials:
        if t.kind == "index":
            phases[t.phase] = phases.get(t.phase, 0) + 1
    body = "\n".join([
        "## kill -9 trials",
        "",
        markdown_table(["target", "trials", "consistent after reopen", "trials that changed the catalog",
                        "uploads acknowledged", "deletes acknowledged", "problems"], summaries),
        "",
        "Every check covers all acknowledgements of all earlier trials too (SQLite `integrity_check`, index == "
        "SQLite ids and vectors, each acknowledged upload present with its original file hash-checked, each "
        "acknowledged delete absent).",
        "",
        f"Indexer kills landed: {', '.join(f'{n} {k}' for k, n in sorted(phases.items()))} (kill time drawn from "
        "40-160% of a timed full run of 40 photos, start-up included).",
        "",
        f"Final uninterrupted `lookalike index` run: **{'PASS' if final_ok else 'FAIL'}** — {final_detail}.",
        "",
        "## full disk and read-only storage",
        "",
        markdown_table(["scenario", "how", "answers", "reads afterwards", "consistent + clear error", "catalog"],
                       [(o.scenario, o.method, o.answers, o.reads_after, o.consistent, o.detail) for o in outcomes]),
        "",
        "<details><summary>every trial</summary>",
        "",
        markdown_table(["target", "#", "kill after s", "phase", "acked adds", "acked deletes", "rows before",
                        "rows after", "ok", "problems"],
                       [(t.kind, t.trial, t.kill_after_s, t.phase, t.acked_adds, t.acked_deletes, t.rows_before,
                         t.rows_after, t.ok, "; ".join(t.problems)[:200]) for t in trials]),
        "",
        "</details>",
    ])
    all_ok = all(t.ok for t in trials) and final_ok and all(o.consistent for o in outcomes)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps({
        "ok": all_ok, "final_index": {"ok": final_ok, "detail": final_detail},
        "summaries": [dict(zip(["target", "trials", "consistent", "changed", "acked_adds", "acked_deletes",
                                "problems"], s)) for s in summaries],
        "index_phases": phases, "outcomes": [asdict(o) for o in outcomes],
        "trials": [asdict(t) for t in trials]}, indent=1))
    write_result("faults", f"Faults: kill -9, full disk, read-only storage — {'PASS' if all_ok else 'FAIL'}", body,
                 f"python benchmarks/faults.py --trials {args.trials}")


if __name__ == "__main__":
    main()
