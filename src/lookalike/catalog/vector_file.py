"""Full vectors by id in a flat float32 file, read through a memory map: the exact re-rank's source.

A large catalog keeps a compressed index in RAM ("PCA96,HNSW32": ~0.7 KB per vector instead of
5 KB) and re-scores its top candidates with the full vectors (``stores/faiss.rerank_ids``). SQLite
already holds those vectors, but fetching 64 rows from it costs ~0.7 ms against ~0.3 ms from a
memory map (benchmarks/results/catalog_1m_refine.md), so the catalog keeps this derived copy:
row ``id`` at offset ``id * dim * 4``. Like the FAISS index it is only a cache of SQLite: rows are
written after SQLite commits and fsynced before the index is saved, so every id in a saved index
has a durable row, and ids the index lacks are rewritten when the catalog reconciles. Rows of
deleted ids stay behind (the index no longer returns them); the file is rebuilt with the index.
The OS page cache, not the process heap, holds the rows that queries touch.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np


class VectorFile:
    """Rows of float32 vectors addressed by integer id."""

    def __init__(self, path: Path | str, dim: int) -> None:
        self.path = Path(path)
        self.dim = int(dim)
        self.row_bytes = self.dim * 4
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._map: np.memmap | None = None
        self._mapped_rows = 0

    @property
    def rows(self) -> int:
        return os.fstat(self._fd).st_size // self.row_bytes

    def write(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Write each vector at its id's row (the file grows as needed; holes read as zeros)."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if not len(ids):
            return
        if ids.min() < 0:
            raise ValueError("vector ids must be >= 0")
        with self._lock:
            need = (int(ids.max()) + 1) * self.row_bytes
            if os.fstat(self._fd).st_size < need:
                os.ftruncate(self._fd, need)
            order = np.argsort(ids, kind="stable")
            for i in order:  # one pwrite per row; runs of consecutive ids could be merged, rarely worth it
                os.pwrite(self._fd, vectors[i].tobytes(), int(ids[i]) * self.row_bytes)

    def fetch(self, ids: np.ndarray) -> np.ndarray:
        """Vectors of ``ids`` (in that order); ids past the end read as zero rows."""
        ids = np.asarray(ids, dtype=np.int64)
        view = self._view()
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        inside = ids < len(view)
        out[inside] = view[ids[inside]]
        return out

    def sync(self) -> None:
        """Make every written row durable (before the index that refers to them is saved)."""
        os.fsync(self._fd)

    def truncate(self) -> None:
        with self._lock:
            self._map = None
            self._mapped_rows = 0
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        with self._lock:
            self._map = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _view(self) -> np.ndarray:
        rows = self.rows
        with self._lock:
            if self._map is None or rows != self._mapped_rows:  # the file grew: map it again
                self._map = (np.memmap(self.path, dtype=np.float32, mode="r", shape=(rows, self.dim))
                             if rows else np.zeros((0, self.dim), dtype=np.float32))
                self._mapped_rows = rows
            return self._map
