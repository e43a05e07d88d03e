"""The vector-store interface: ids and vectors only, never images.

The embedded FAISS store is the zero-set-up default; server-grade stores (Qdrant, Milvus) implement
the same Protocol so search, dedup and the API behave the same on each (one shared test suite,
``tests/catalog/test_store_contract.py``, runs against every implementation). Vectors are
L2-normalized float32, so inner product = cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Hit:
    id: int
    cosine: float


@runtime_checkable
class VectorStore(Protocol):
    """What a catalog needs from a vector database."""

    dim: int

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Insert or replace vectors under integer ids (idempotent: re-adding an id replaces it)."""
        ...

    def remove(self, ids: Sequence[int]) -> None:
        """Delete ids; unknown ids are ignored."""
        ...

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top-k by cosine for each query row, best first."""
        ...

    def range_search(self, queries: np.ndarray, min_cosine: float) -> list[list[Hit]]:
        """Every stored vector with cosine >= min_cosine, per query (dedup's building block)."""
        ...

    def ids(self) -> np.ndarray:
        """All stored ids (int64)."""
        ...

    def get(self, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors for ids, in order (for export/migration and id-based search)."""
        ...

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in batches: export and migration without loading everything at once."""
        ...

    def __len__(self) -> int: ...

    def flush(self) -> None:
        """Make everything added so far durable (the catalog commits metadata after this)."""
        ...

    def close(self) -> None: ...
