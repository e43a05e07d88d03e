"""Labelled pairs from users ("these two are the same" / "different"), kept for re-calibration.

The images themselves are kept (content-addressed, once each) rather than catalog ids or scores:
a re-calibration may use another model, and a catalog image may be deleted later. One SQLite
file under ``data_dir/feedback``; ``lookalike calibrate --from-feedback`` reads it back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from lookalike.config import Settings
from lookalike.errors import LookalikeError
from lookalike.imaging import DEFAULT_LIMITS, ImageLimits, content_hash, decode

Label = Literal["same", "different"]
LABELS = ("same", "different")

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    label      TEXT NOT NULL CHECK (label IN ('same', 'different')),
    hash_a     TEXT NOT NULL,
    hash_b     TEXT NOT NULL,
    catalog    TEXT,            -- set when the pair was given as catalog ids
    id_a       INTEGER,
    id_b       INTEGER,
    filename_a TEXT,
    filename_b TEXT
);
"""


@dataclass(frozen=True)
class FeedbackRecord:
    id: int
    created_at: float
    label: str
    hash_a: str
    hash_b: str
    catalog: str | None
    id_a: int | None
    id_b: int | None
    filename_a: str | None
    filename_b: str | None

    def to_dict(self) -> dict:
        return asdict(self)


class BadLabelError(LookalikeError):
    status = 422
    code = "bad_label"


def check_label(label: str) -> str:
    if label not in LABELS:
        raise BadLabelError(f"label must be 'same' or 'different', got {label!r}")
    return label


class FeedbackStore:
    """SQLite rows + content-addressed image files; safe to share between threads."""

    def __init__(self, root: Path, limits: ImageLimits = DEFAULT_LIMITS) -> None:
        self.root = Path(root)
        self.images = self.root / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.root / "feedback.sqlite3", check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    def _keep(self, data: bytes, what: str) -> str:
        decode(data, self.limits)  # refuse what is not an image before keeping it
        digest = content_hash(data)
        path = self.images / digest
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return digest

    def add(self, data_a: bytes, data_b: bytes, label: str, *, catalog: str | None = None, id_a: int | None = None,
            id_b: int | None = None, filename_a: str | None = None, filename_b: str | None = None) -> FeedbackRecord:
        check_label(label)
        hash_a, hash_b = self._keep(data_a, "image_1"), self._keep(data_b, "image_2")
        with self._lock, self._conn:
            cursor = self._conn.execute(
                "INSERT INTO feedback (created_at, label, hash_a, hash_b, catalog, id_a, id_b, filename_a, filename_b)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), label, hash_a, hash_b, catalog, id_a, id_b, filename_a, filename_b),
            )
            row_id = cursor.lastrowid
        return self.get(int(row_id))

    def get(self, feedback_id: int) -> FeedbackRecord:
        with self._lock:
            row = self._conn.execute("SELECT * FROM feedback WHERE id = ?", (feedback_id,)).fetchone()
        if row is None:
            from lookalike.errors import NotFoundError

            raise NotFoundError(f"no feedback {feedback_id}")
        return FeedbackRecord(*row)

    def list(self, limit: int | None = None) -> list[FeedbackRecord]:
        query = "SELECT * FROM feedback ORDER BY id"
        with self._lock:
            rows = self._conn.execute(query + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [FeedbackRecord(*row) for row in rows]

    def labelled_pairs(self) -> list[tuple[Path, Path, int]]:
        """(image a, image b, 1 for same / 0 for different), for calibration."""
        return [(self.images / r.hash_a, self.images / r.hash_b, int(r.label == "same")) for r in self.list()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def feedback_root(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser() / "feedback"


@contextmanager
def open_feedback(settings: Settings) -> Iterator[FeedbackStore]:
    store = FeedbackStore(feedback_root(settings), ImageLimits.from_settings(settings))
    try:
        yield store
    finally:
        store.close()


def add_catalog_pair(store: FeedbackStore, settings: Settings, catalog: str, id_a: int, id_b: int,
                     label: str) -> FeedbackRecord:
    """Feedback on two images of a catalog: their original bytes are copied into the store.

    Reads the catalog's metadata only (no index is opened), so a running server's catalog
    handles are not disturbed.
    """
    from lookalike.catalog.catalog import DB_FILE, catalog_dir
    from lookalike.catalog.metadata import Metadata
    from lookalike.errors import NotFoundError

    check_label(label)
    db = catalog_dir(catalog, settings) / DB_FILE
    if not db.is_file():
        from lookalike.catalog.catalog import missing_catalog

        raise missing_catalog(catalog, settings)
    meta = Metadata(db)
    try:
        records = []
        for image_id in (id_a, id_b):
            record = meta.get(image_id)
            if record is None:
                raise NotFoundError(f"no image {image_id} in catalog {catalog!r}")
            if not record.path or not Path(record.path).is_file():
                raise NotFoundError(f"the original of image {image_id} is no longer at {record.path}")
            records.append(record)
    finally:
        meta.close()
    data = [Path(r.path).read_bytes() for r in records]
    return store.add(data[0], data[1], label, catalog=catalog, id_a=id_a, id_b=id_b,
                     filename_a=records[0].filename, filename_b=records[1].filename)
