"""Qdrant as a ``VectorStore``: the server-grade store for catalogs that outgrow one machine.

The same class covers both ends: ``QdrantStore(path=...)`` is qdrant-client's local mode (an
in-process, file-backed brute-force store used by tests and small embedded installs), and
``QdrantStore(url=...)`` talks to a Qdrant server or cluster, where HNSW, quantization and sharding
live. Metadata stays in the catalog's SQLite; Qdrant holds only ids and vectors, like FAISS.

Qdrant's cosine distance normalizes on insert and returns the cosine as the score, so hits mean
the same as FAISS inner-product hits on our L2-normalized vectors. Point ids must be unsigned
integers, which SQLite row ids are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from lookalike.errors import ConflictError, DependencyMissingError
from lookalike.catalog.stores.base import Hit

if TYPE_CHECKING:  # qdrant_client is an optional extra: imported only when a store is opened
    from qdrant_client import QdrantClient

DEFAULT_COLLECTION = "lookalike"


def _import_qdrant():
    try:
        import qdrant_client
        from qdrant_client import models
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyMissingError("store 'qdrant' needs `pip install lookalike[scale]` (qdrant-client)",
                                     code="store_unavailable") from exc
    return qdrant_client, models


class QdrantStore:
    """Ids + vectors in one Qdrant collection (cosine distance)."""

    def __init__(
        self,
        dim: int,
        *,
        path: str | Path | None = None,
        url: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        api_key: str | None = None,
        batch_size: int = 512,
        hnsw_m: int = 16,
        on_disk: bool = False,
        client: "QdrantClient | None" = None,
    ) -> None:
        qdrant_client, models = _import_qdrant()
        self._models = models
        self.dim = int(dim)
        self.collection = collection
        self.batch_size = int(batch_size)
        if client is not None:
            self.client = client
        elif url:
            self.client = qdrant_client.QdrantClient(url=url, api_key=api_key)
        elif path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            try:
                self.client = qdrant_client.QdrantClient(path=str(path))
            except RuntimeError as exc:  # local mode locks its folder to one client
                raise ConflictError(
                    f"the Qdrant local store at {path} is open in another process; local mode serves one "
                    "process (set store_url to a Qdrant server to share it)", code="store_busy",
                ) from exc
        else:
            self.client = qdrant_client.QdrantClient(location=":memory:")
        self.local = url is None and client is None
        self._ensure_collection(hnsw_m, on_disk)

    # --- set-up -------------------------------------------------------------------------------
    def _ensure_collection(self, hnsw_m: int, on_disk: bool) -> None:
        models = self._models
        if self.client.collection_exists(self.collection):
            existing = self.client.get_collection(self.collection).config.params.vectors
            size = getattr(existing, "size", None)
            if size is not None and int(size) != self.dim:
                raise ConflictError(
                    f"Qdrant collection {self.collection!r} holds {size}-d vectors, not {self.dim}-d",
                    code="dim_mismatch",
                )
            return
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE, on_disk=on_disk),
            hnsw_config=models.HnswConfigDiff(m=hnsw_m),
        )

    # --- writes -------------------------------------------------------------------------------
    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    @staticmethod
    def _point_ids(ids: Sequence[int]) -> list[int]:
        out = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        if any(i < 0 for i in out):
            raise ValueError("Qdrant point ids must be non-negative integers")
        return out

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        point_ids = self._point_ids(ids)
        vectors = self._check(vectors)
        if len(point_ids) != len(vectors):
            raise ValueError(f"{len(point_ids)} ids for {len(vectors)} vectors")
        # Upsert replaces an existing id, which is the Protocol's idempotence; within one call the
        # last duplicate wins, as it would in FAISS's remove-then-add.
        for start in range(0, len(point_ids), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            self.client.upsert(
                self.collection,
                points=self._models.Batch(ids=point_ids[chunk], vectors=vectors[chunk].tolist()),
                wait=True,
            )

    def remove(self, ids: Sequence[int]) -> None:
        point_ids = [i for i in (int(x) for x in np.asarray(ids, dtype=np.int64).ravel()) if i >= 0]
        for start in range(0, len(point_ids), self.batch_size):
            self.client.delete(
                self.collection,
                points_selector=self._models.PointIdsList(points=point_ids[start : start + self.batch_size]),
                wait=True,
            )

    # --- reads --------------------------------------------------------------------------------
    def _queries(self, queries: np.ndarray) -> np.ndarray:
        return self._check(queries)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        queries = self._queries(queries)
        if k <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        models = self._models
        requests = [models.QueryRequest(query=q.tolist(), limit=int(k)) for q in queries]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [[Hit(int(p.id), min(1.0, float(p.score))) for p in r.points] for r in responses]

    def range_search(self, queries: np.ndarray, min_cosine: float, page: int = 256) -> list[list[Hit]]:
        """Every hit above ``min_cosine``: one batched request for all queries, then paging (by
        ``score_threshold`` + offset) only for the queries whose first page came back full."""
        queries = self._queries(queries)
        models = self._models
        threshold = float(min_cosine)
        out: list[list[Hit]] = [[] for _ in range(len(queries))]
        if len(queries) == 0:
            return out
        requests = [models.QueryRequest(query=q.tolist(), limit=page, score_threshold=threshold) for q in queries]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        for row, response in enumerate(responses):
            points = response.points
            offset = 0
            while True:
                out[row].extend(Hit(int(p.id), min(1.0, float(p.score))) for p in points if p.score >= threshold)
                if len(points) < page:
                    break
                offset += page
                points = self.client.query_points(
                    self.collection, query=queries[row].tolist(), limit=page, offset=offset,
                    score_threshold=threshold, with_payload=False,
                ).points
        return out

    def ids(self) -> np.ndarray:
        chunks = [batch_ids for batch_ids, _ in self._scroll(self.batch_size * 8, with_vectors=False)]
        return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)

    def get(self, ids: Sequence[int]) -> np.ndarray:
        wanted = self._point_ids(ids)
        if not wanted:
            return np.zeros((0, self.dim), dtype=np.float32)
        found: dict[int, list[float]] = {}
        unique = list(dict.fromkeys(wanted))
        for start in range(0, len(unique), self.batch_size):
            records = self.client.retrieve(
                self.collection, ids=unique[start : start + self.batch_size], with_vectors=True, with_payload=False
            )
            found.update((int(r.id), r.vector) for r in records)  # type: ignore[misc]
        missing = [i for i in unique if i not in found]
        if missing:
            raise KeyError(f"ids not in the store: {missing[:10]}")
        return np.asarray([found[i] for i in wanted], dtype=np.float32)

    def _scroll(self, batch_size: int, with_vectors: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection, limit=batch_size, offset=offset, with_vectors=with_vectors, with_payload=False
            )
            if records:
                ids = np.asarray([int(r.id) for r in records], dtype=np.int64)
                vectors = np.asarray([r.vector for r in records], dtype=np.float32) if with_vectors else None
                yield ids, vectors
            if offset is None:
                return

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for ids, vectors in self._scroll(batch_size, with_vectors=True):
            yield ids, vectors  # type: ignore[misc]

    def __len__(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    @property
    def is_trained(self) -> bool:
        """Qdrant builds its HNSW graph itself: nothing to train before adding (unlike IVF/PQ)."""
        return True

    def flush(self) -> None:
        """Upserts already wait for the write; local mode persists each operation itself."""

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "QdrantStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
