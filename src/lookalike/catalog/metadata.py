"""Catalog metadata in SQLite (WAL): the source of truth, vectors included.

Each image row also holds its embedding as a float32 blob, written in the same transaction as the
row. The FAISS index is then a rebuildable cache: after a crash (``kill -9`` mid-batch) whatever
SQLite committed is complete, and the catalog reconciles the index against it on open. WAL mode
lets the API read while an indexer writes; ``synchronous=NORMAL`` keeps commits durable across a
process crash (an OS crash may lose the last commits, never corrupt the file).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a FAISS id means one row forever
    path         TEXT,                               -- absolute source path; NULL for uploads
    filename     TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size         INTEGER NOT NULL,                   -- bytes
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    mtime        REAL,                               -- source mtime (seconds); NULL for uploads
    model        TEXT NOT NULL,
    added_at     REAL NOT NULL,
    vector       BLOB NOT NULL                       -- float32, L2-normalized
);
CREATE UNIQUE INDEX IF NOT EXISTS images_path ON images(path) WHERE path IS NOT NULL;
CREATE INDEX IF NOT EXISTS images_hash ON images(content_hash);
"""

COLUMNS = "id, path, filename, content_hash, size, width, height, mtime, model, added_at"


@dataclass(frozen=True)
class ImageRecord:
    """One catalog image's metadata (the vector stays out: the store answers for vectors)."""

    id: int
    path: str | None
    filename: str
    content_hash: str
    size: int
    width: int
    height: int
    mtime: float | None
    model: str
    added_at: float

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "path": self.path,
            "filename": self.filename,
            "content_hash": self.content_hash,
            "width": self.width,
            "height": self.height,
            "bytes": self.size,
            "added_at": self.added_at,
        }


@dataclass(frozen=True)
class NewImage:
    """A row to insert (no id yet)."""

    path: str | None
    filename: str
    content_hash: str
    size: int
    width: int
    height: int
    mtime: float | None


class Metadata:
    """A thread-safe wrapper over one SQLite file (one connection, one lock: SQLite serialises anyway)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)

    # --- info ---------------------------------------------------------------------------------
    def info(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT key, value FROM info").fetchall())

    def set_info(self, **values: object) -> None:
        with self._lock, self._transaction():
            self._conn.executemany(
                "INSERT INTO info(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(k, str(v)) for k, v in values.items()],
            )

    # --- writes -------------------------------------------------------------------------------
    def insert(self, rows: Sequence[NewImage], vectors: np.ndarray, model: str, *,
               replace_ids: Iterable[int] = ()) -> list[int]:
        """Insert rows with their vectors (and delete ``replace_ids``) in ONE transaction."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(rows) != len(vectors):
            raise ValueError(f"{len(rows)} rows but {len(vectors)} vectors")
        now = time.time()
        ids: list[int] = []
        with self._lock, self._transaction():
            stale = list(replace_ids)
            if stale:
                self._conn.executemany("DELETE FROM images WHERE id = ?", [(int(i),) for i in stale])
            for row, vector in zip(rows, vectors):
                cur = self._conn.execute(
                    "INSERT INTO images(path, filename, content_hash, size, width, height, mtime, model, added_at, vector)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.path, row.filename, row.content_hash, row.size, row.width, row.height, row.mtime, model,
                     now, vector.tobytes()),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def delete(self, ids: Iterable[int]) -> int:
        with self._lock, self._transaction():
            cur = self._conn.executemany("DELETE FROM images WHERE id = ?", [(int(i),) for i in ids])
            return cur.rowcount

    def touch(self, updates: Sequence[tuple[int, float]]) -> None:
        """Record a new mtime for rows whose bytes did not change."""
        with self._lock, self._transaction():
            self._conn.executemany("UPDATE images SET mtime = ? WHERE id = ?", [(m, i) for i, m in updates])

    # --- reads --------------------------------------------------------------------------------
    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def get(self, image_id: int) -> ImageRecord | None:
        if not 0 < int(image_id) < 2**63:  # not a rowid (SQLite would raise OverflowError): simply absent
            return None
        with self._lock:
            row = self._conn.execute(f"SELECT {COLUMNS} FROM images WHERE id = ?", (int(image_id),)).fetchone()
        return ImageRecord(*row) if row else None

    def get_many(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        ids = [int(i) for i in ids if 0 < int(i) < 2**63]  # others cannot be rowids
        with self._lock:
            for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
                chunk = ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(f"SELECT {COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                    out[row[0]] = ImageRecord(*row)
        return out

    def by_hash(self, content_hash: str) -> ImageRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {COLUMNS} FROM images WHERE content_hash = ? ORDER BY id LIMIT 1", (content_hash,)
            ).fetchone()
        return ImageRecord(*row) if row else None

    def by_path(self, path: str) -> ImageRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {COLUMNS} FROM images WHERE path = ?", (path,)).fetchone()
        return ImageRecord(*row) if row else None

    def paths_under(self, root: str) -> dict[str, ImageRecord]:
        """Rows whose path lies under ``root`` (a folder path without trailing separator)."""
        prefix = root.rstrip("/\\") + "/"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {COLUMNS} FROM images WHERE path IS NOT NULL AND substr(path, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchall()
        return {r[1]: ImageRecord(*r) for r in rows}

    def all_ids(self) -> np.ndarray:
        with self._lock:
            rows = self._conn.execute("SELECT id FROM images ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def records(self) -> Iterator[ImageRecord]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {COLUMNS} FROM images ORDER BY id").fetchall()
        return (ImageRecord(*r) for r in rows)

    def vectors(self, ids: Sequence[int], dim: int) -> np.ndarray:
        """Vectors of ``ids`` in order, from the durable copy."""
        ids = [int(i) for i in ids]
        found: dict[int, bytes] = {}
        with self._lock:
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                found.update(self._conn.execute(f"SELECT id, vector FROM images WHERE id IN ({marks})", chunk).fetchall())
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"no vector for ids {missing[:5]}")
        out = np.empty((len(ids), dim), dtype=np.float32)
        for row, i in enumerate(ids):
            out[row] = np.frombuffer(found[i], dtype=np.float32)
        return out

    def iter_vectors(self, dim: int, batch_size: int = 4096, after_id: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) by ascending id, a batch at a time (index rebuilds at any size)."""
        last = after_id
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT id, vector FROM images WHERE id > ? ORDER BY id LIMIT ?", (last, batch_size)
                ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            yield ids, vecs
            last = int(ids[-1])

    def exact_groups(self) -> list[list[int]]:
        """Ids sharing one content hash (same bytes), groups of two or more."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT group_concat(id) FROM images GROUP BY content_hash HAVING COUNT(*) > 1"
            ).fetchall()
        return [sorted(int(x) for x in r[0].split(",")) for r in rows]

    def data_version(self) -> int:
        """Changes whenever ANOTHER connection (e.g. an indexing process) commits."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # --- plumbing -----------------------------------------------------------------------------
    def _transaction(self):
        return _Transaction(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (autocommit connection, explicit batches)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
