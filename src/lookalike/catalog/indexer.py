"""Folder -> catalog, as a Reader -> Embed -> Writer pipeline.

- Reader (a thread pool): stat, read, hash, decode at reduced JPEG size, preprocess to the model's
  input array. Pillow and NumPy release the GIL for the heavy parts, so threads keep ahead of
  inference without pickling pixels between processes.
- Embed (the calling thread): batched ``encode_arrays`` through ONNX Runtime while the readers
  decode the next images.
- Writer: every ``commit_every`` images one SQLite transaction (rows + vectors), then the index.

Incremental: a file whose size and mtime match its row is skipped without reading; a changed
mtime with the same bytes (hash) only updates the row; new bytes are embedded; same bytes as an
image already in the catalog reuse its vector (no inference); files gone from the folder are
removed. Unreadable files are collected with the reason and indexing goes on. Killed at any point,
what was committed stays and the next run picks up the rest.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lookalike.errors import LookalikeError, NotFoundError
from lookalike.imaging import IMAGE_EXTENSIONS, content_hash, open_checked, read_source_bytes
from lookalike.catalog.catalog import Catalog, upright_size
from lookalike.catalog.metadata import ImageRecord, NewImage


@dataclass
class IndexProgress:
    done: int  # files handled so far (any outcome)
    total: int  # files to handle this run (unchanged ones excluded)
    embedded: int
    errors: int


@dataclass
class IndexReport:
    catalog: str
    root: str
    scanned: int = 0
    added: int = 0  # new images embedded
    changed: int = 0  # re-embedded because their bytes changed
    unchanged: int = 0
    duplicates: int = 0  # same bytes as another image: vector reused, no inference
    removed: int = 0  # rows whose file vanished
    errors: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    elapsed_s: float = 0.0

    @property
    def embedded(self) -> int:
        return self.added + self.changed

    @property
    def images_per_s(self) -> float:
        return self.embedded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "catalog": self.catalog, "root": self.root, "scanned": self.scanned, "added": self.added,
            "changed": self.changed, "unchanged": self.unchanged, "duplicates": self.duplicates,
            "removed": self.removed, "errors": [{"path": p, "error": e} for p, e in self.errors],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()}, "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(self.images_per_s, 2),
        }


ProgressFn = Callable[[IndexProgress], None]


def walk_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder`` (recursive, by extension, sorted, hidden folders skipped)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS and not name.startswith("."):
                yield Path(dirpath) / name


@dataclass
class _Item:
    """What the reader hands on: one of 'embed', 'dup', 'touch', 'error'."""

    kind: str
    path: str
    row: NewImage | None = None
    array: np.ndarray | None = None
    old: ImageRecord | None = None  # the row this file had before (changed / touched files)
    source_id: int | None = None  # for 'dup': the row whose vector is reused
    error: str = ""
    seconds: float = 0.0


def _read(path: str, old: ImageRecord | None, catalog: Catalog, embedder) -> _Item:  # noqa: ANN001
    """Reader stage for one file (runs in a worker thread)."""
    try:
        stat = os.stat(path)
        data = read_source_bytes(path, embedder.limits)
        digest = content_hash(data)
        if old is not None and old.content_hash == digest:
            return _Item("touch", path, old=old, row=NewImage(path, old.filename, digest, old.size, old.width,
                                                                 old.height, stat.st_mtime))
        width, height = upright_size(open_checked(data, embedder.limits))
        row = NewImage(path, Path(path).name, digest, len(data), width, height, stat.st_mtime)
        twin = catalog.meta.by_hash(digest)
        if twin is not None:
            return _Item("dup", path, row=row, old=old, source_id=twin.id)
        image = embedder.load(data)
        array = embedder.preprocessing.to_array([image])[0]
        return _Item("embed", path, row=row, array=array, old=old)
    except LookalikeError as exc:
        return _Item("error", path, error=exc.message)
    except OSError as exc:
        return _Item("error", path, error=f"cannot read: {exc.strerror or exc}")


class _Writer:
    """Accumulates embedded rows and duplicate rows; commits them in batches."""

    def __init__(self, catalog: Catalog, report: IndexReport, timings: dict[str, float]) -> None:
        self.catalog = catalog
        self.report = report
        self.timings = timings
        self.rows: list[NewImage] = []
        self.vectors: list[np.ndarray] = []
        self.replace: list[int] = []
        self.dups: list[_Item] = []
        self.changed = 0
        self.added = 0

    def __len__(self) -> int:
        return len(self.rows) + len(self.dups)

    def add(self, item: _Item, vector: np.ndarray) -> None:
        self.rows.append(item.row)  # type: ignore[arg-type]
        self.vectors.append(vector)
        if item.old is not None:
            self.replace.append(item.old.id)
            self.changed += 1
        else:
            self.added += 1

    def commit(self) -> None:
        if not len(self):
            return
        start = time.perf_counter()
        rows, vectors = list(self.rows), list(self.vectors)
        local = {row.content_hash: vec for row, vec in zip(rows, vectors)}
        for item in self.dups:
            vec = local.get(item.row.content_hash)  # type: ignore[union-attr]
            if vec is None:  # the twin was committed earlier (this run or before)
                twin = self.catalog.meta.by_hash(item.row.content_hash)  # type: ignore[union-attr]
                if twin is None:
                    self.report.errors.append((item.path, "duplicate of an image that vanished; re-run to embed"))
                    continue
                vec = self.catalog.meta.vectors([twin.id], self.catalog.dim)[0]
            rows.append(item.row)  # type: ignore[arg-type]
            vectors.append(vec)
            if item.old is not None:
                self.replace.append(item.old.id)
            self.report.duplicates += 1
        if rows:
            self.catalog.add_embedded(rows, np.stack(vectors), replace_ids=self.replace)
        self.report.added += self.added
        self.report.changed += self.changed
        self.rows, self.vectors, self.replace, self.dups = [], [], [], []
        self.added = self.changed = 0
        self.timings["write"] += time.perf_counter() - start


def unchanged_since_indexed(path, record) -> bool:  # noqa: ANN001 - a path and an ImageRecord
    """Same size and mtime as when indexed: skip it without reading (raises OSError if unreadable)."""
    stat = os.stat(path)
    return stat.st_size == record.size and record.mtime is not None and abs(stat.st_mtime - record.mtime) < 1e-6


def changed_since_indexed(
    paths: list[str], existing: dict, report: IndexReport
) -> list[tuple[str, ImageRecord | None]]:
    """The paths to (re-)embed, each with its current record (None: new); unchanged ones and
    unreadable ones are counted in ``report`` instead. Shared by the local and the Ray indexer."""
    todo: list[tuple[str, ImageRecord | None]] = []
    for path in paths:
        old = existing.get(path)
        if old is not None:
            try:
                if unchanged_since_indexed(path, old):
                    report.unchanged += 1
                    continue
            except OSError as exc:
                report.errors.append((path, f"cannot stat: {exc.strerror or exc}"))
                continue
        todo.append((path, old))
    return todo


def index_folder(
    folder: str | Path,
    catalog: Catalog,
    *,
    embedder=None,  # noqa: ANN001 - a ModelEmbedder; the catalog's own when None
    workers: int | None = None,
    commit_every: int | None = None,
    remove_vanished: bool = True,
    progress: ProgressFn | None = None,
) -> IndexReport:
    """Index every image under ``folder`` into ``catalog``; see the module docstring."""
    started = time.perf_counter()
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise NotFoundError(f"{folder} is not a folder")
    settings = catalog.settings
    embedder = embedder or catalog.embedder()
    workers = workers or settings.index_workers or os.cpu_count() or 1
    commit_every = commit_every or settings.catalog_commit_every
    report = IndexReport(catalog.name, str(root))
    timings = {"scan": 0.0, "read_decode": 0.0, "wait_reader": 0.0, "embed": 0.0, "write": 0.0, "remove": 0.0}

    # --- scan: what is new, changed, unchanged, vanished -----------------------------------
    existing = catalog.meta.paths_under(str(root))
    paths = [str(path) for path in walk_images(root)]
    seen = set(paths)
    report.scanned = len(paths)
    todo = changed_since_indexed(paths, existing, report)
    timings["scan"] = time.perf_counter() - started

    # --- read -> embed -> write -------------------------------------------------------------
    writer = _Writer(catalog, report, timings)
    batch: list[_Item] = []
    touches: list[tuple[int, float]] = []
    run_hashes: dict[str, int] = {}
    done = 0

    def embed_batch() -> None:
        if not batch:
            return
        start = time.perf_counter()
        vectors = embedder.encode_arrays(np.stack([item.array for item in batch]))
        timings["embed"] += time.perf_counter() - start
        for item, vector in zip(batch, vectors):
            writer.add(item, vector)
        batch.clear()
        if len(writer) >= commit_every:
            writer.commit()

    def timed_read(path: str, old: ImageRecord | None) -> tuple[_Item, float]:
        start = time.perf_counter()
        item = _read(path, old, catalog, embedder)
        return item, time.perf_counter() - start

    window = max(2 * embedder.batch_size, 4 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookalike-read") as pool:
        pending: deque[Future] = deque()
        queue = iter(todo)
        for path, old in queue:
            pending.append(pool.submit(timed_read, path, old))
            if len(pending) >= window:
                break
        while pending:
            wait_start = time.perf_counter()
            item, seconds = pending.popleft().result()
            timings["wait_reader"] += time.perf_counter() - wait_start
            timings["read_decode"] += seconds
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(timed_read, *nxt))
            if item.kind == "error":
                report.errors.append((item.path, item.error))
            elif item.kind == "touch":
                touches.append((item.old.id, item.row.mtime))  # type: ignore[union-attr]
                report.unchanged += 1
            elif item.kind == "dup" or item.row.content_hash in run_hashes:  # type: ignore[union-attr]
                item.array = None  # same bytes as an image embedded before: reuse that vector
                writer.dups.append(item)
            else:
                run_hashes[item.row.content_hash] = 1  # type: ignore[union-attr]
                batch.append(item)
                if len(batch) >= embedder.batch_size:
                    embed_batch()
            done += 1
            if progress is not None:
                progress(IndexProgress(done, len(todo), report.embedded + writer.added + writer.changed,
                                       len(report.errors)))
        embed_batch()
        writer.commit()

    return finish_index(catalog, report, timings, started, touches=touches, existing=existing,
                        seen=seen if remove_vanished else None)


def finish_index(
    catalog: Catalog,
    report: IndexReport,
    timings: dict[str, float],
    started: float,
    *,
    touches: list[tuple[int, float]],
    existing: dict[str, ImageRecord],
    seen: set[str] | None,
) -> IndexReport:
    """The end of an indexing run, shared by the local and the Ray indexer: record new mtimes of
    unchanged files, drop rows whose file vanished (when ``seen`` is given), flush the index once."""
    if touches:
        catalog.meta.touch(touches)
    if seen is not None:
        start = time.perf_counter()
        gone = [record.id for path, record in existing.items() if path not in seen]
        if gone:
            report.removed = catalog.remove(gone)
        timings["remove"] = time.perf_counter() - start
    start = time.perf_counter()
    catalog.flush()
    timings["write"] += time.perf_counter() - start
    report.timings = timings
    report.elapsed_s = time.perf_counter() - started
    return report
