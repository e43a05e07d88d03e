"""Catalog fixtures: per-test catalogs, and the list of vector stores the contract suite runs on.

To run the store contract suite on another ``VectorStore`` (Qdrant, Milvus), append a
``pytest.param(factory, id=..., marks=...)`` to ``STORE_FACTORIES``: a factory takes
``(dim, tmp_path)`` and returns an empty store (persisted under tmp_path when it persists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from lookalike.catalog.stores.base import VectorStore

StoreFactory = Callable[[int, Path], VectorStore]


def _faiss(factory: str) -> StoreFactory:
    def make(dim: int, tmp_path: Path) -> VectorStore:
        from lookalike.catalog.stores.faiss import FaissStore

        return FaissStore(dim, factory, path=tmp_path / "vectors.faiss", search_params="nprobe=64,efSearch=128")

    return make


STORE_FACTORIES: list = [
    pytest.param(_faiss("Flat"), id="faiss-Flat"),
    pytest.param(_faiss("HNSW32"), id="faiss-HNSW32"),
    pytest.param(_faiss("IVF8,Flat"), id="faiss-IVF8,Flat"),
]


@pytest.fixture(params=STORE_FACTORIES)
def store_factory(request) -> StoreFactory:
    return request.param
