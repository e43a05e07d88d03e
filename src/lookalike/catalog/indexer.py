"""Folder -> catalog on one machine: the ingestion pipeline (``ingest.py``) on threads.

- Reader (``ingest.read_image`` in a thread pool): stat, read, hash, decode at reduced JPEG size,
  preprocess to the model's input array. Pillow and NumPy release the GIL for the heavy parts, so
  threads keep ahead of inference without pickling pixels between processes.
- Embed (the calling thread): batched forwards while the readers decode the next images.
- Writer (``ingest.CatalogWriter``): every ``commit_every`` images one SQLite transaction (rows +
  vectors), then the index.

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


from lookalike.errors import NotFoundError
from lookalike.imaging import IMAGE_EXTENSIONS
from lookalike.catalog.catalog import Catalog
from lookalike.catalog.ingest import CatalogWriter, Item, embed_items, read_image
from lookalike.catalog.metadata import ImageRecord


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
        """Throughput of the run itself: a first use's model export is not the indexer's speed."""
        working = self.elapsed_s - self.timings.get("load_model", 0.0)
        return self.embedded / working if working > 0 else 0.0

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
    embedder = embedder or catalog.embedder()  # a first use exports the model: timed apart from the scan
    loaded = time.perf_counter()
    workers = workers or settings.index_workers or os.cpu_count() or 1
    commit_every = commit_every or settings.catalog_commit_every
    report = IndexReport(catalog.name, str(root))
    timings = {"load_model": loaded - started, "scan": 0.0, "read_decode": 0.0, "waiting_for_files": 0.0, "embed": 0.0,
               "write": 0.0, "remove": 0.0}

    # --- scan: what is new, changed, unchanged, vanished -----------------------------------
    existing = catalog.meta.paths_under(str(root))
    paths = [str(path) for path in walk_images(root)]
    seen = set(paths)
    report.scanned = len(paths)
    todo = changed_since_indexed(paths, existing, report)
    timings["scan"] = time.perf_counter() - loaded

    # --- read -> embed -> write (catalog/ingest.py) ----------------------------------------------
    writer = CatalogWriter(catalog, commit_every)
    batch: list[Item] = []
    run_hashes: set[str] = set()  # bytes met in this run: a second file with them reuses the vector
    done = 0

    def is_known(digest: str) -> bool:  # runs in reader threads: reads SQLite, no shared Python state
        return catalog.meta.by_hash(digest) is not None

    def embed_batch() -> None:
        if not batch:
            return
        start = time.perf_counter()
        vectors = embed_items(batch, embedder)
        timings["embed"] += time.perf_counter() - start
        for item, vector in zip(batch, vectors):
            writer.take(item, vector)
        batch.clear()

    def timed_read(path: str, old: ImageRecord | None) -> Item:
        start = time.perf_counter()
        item = read_image(path, embedder, path=path, old=old, is_known=is_known,
                          with_features=settings.index_local_features)
        item.seconds = time.perf_counter() - start
        return item

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
            item = pending.popleft().result()
            timings["waiting_for_files"] += time.perf_counter() - wait_start
            timings["read_decode"] += item.seconds
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(timed_read, *nxt))
            if item.kind == "embed" and item.row.content_hash in run_hashes:  # type: ignore[union-attr]
                item.kind, item.array = "dup", None  # same bytes as a file read earlier in this run
            if item.kind == "embed":
                run_hashes.add(item.row.content_hash)  # type: ignore[union-attr]
                batch.append(item)
                if len(batch) >= embedder.batch_size:
                    embed_batch()
            elif item.kind == "dup" and any(b.row.content_hash == item.row.content_hash for b in batch):  # type: ignore[union-attr]
                embed_batch()  # its twin is still in the batch: embed it first, then reuse its vector
                writer.take(item)
            else:
                writer.take(item)
            done += 1
            if progress is not None:
                progress(IndexProgress(done, len(todo), writer.embedded, len(report.errors) + len(writer.counts.errors)))
        embed_batch()
        writer.commit()

    return finish_index(catalog, report, timings, started, writer=writer, existing=existing,
                        seen=seen if remove_vanished else None)


def finish_index(
    catalog: Catalog,
    report: IndexReport,
    timings: dict[str, float],
    started: float,
    *,
    writer: CatalogWriter,
    existing: dict[str, ImageRecord],
    seen: set[str] | None,
) -> IndexReport:
    """The end of an indexing run, shared by the local and the Ray indexer: the writer's counts into
    the report, new mtimes of unchanged files recorded, rows whose file vanished dropped (when
    ``seen`` is given), the index flushed once."""
    counts = writer.counts
    report.added, report.changed, report.duplicates = counts.added, counts.changed, counts.duplicates
    report.unchanged += counts.unchanged
    report.errors.extend(counts.errors)
    if writer.touches:
        catalog.meta.touch(writer.touches)
    if seen is not None:
        start = time.perf_counter()
        gone = [record.id for path, record in existing.items() if path not in seen]
        if gone:
            report.removed = catalog.remove(gone)
        timings["remove"] = time.perf_counter() - start
    start = time.perf_counter()
    catalog.flush()
    timings["write"] += writer.write_s + time.perf_counter() - start
    report.timings = timings
    report.elapsed_s = time.perf_counter() - started
    return report
