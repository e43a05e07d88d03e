"""Milvus as a ``VectorStore``: Milvus Lite (a local ``.db`` file) in tests, a cluster URI in production.

One collection per catalog with two fields, an INT64 primary key (the catalog row id) and a
FLOAT_VECTOR, COSINE metric, so scores are the same cosines FAISS returns on L2-normalized vectors.
Collections are created with Strong consistency: a search right after an upsert sees it, as the
catalog (and its tests) expect. Milvus caps one search reply at 16,384 hits (``MAX_TOPK``), which
bounds ``range_search`` per query; far above what a near-duplicate cluster ever holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from lookalike.errors import ConflictError, DependencyMissingError
from lookalike.catalog.stores.base import Hit

MAX_TOPK = 16_384
DEFAULT_COLLECTION = "lookalike"


def _import_milvus():
    try:
        import pymilvus
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyMissingError("store 'milvus' needs `pip install pymilvus milvus-lite`",
                                     code="store_unavailable") from exc
    return pymilvus


class MilvusStore:
    """Ids + vectors in one Milvus collection (COSINE)."""

    def __init__(self, dim: int, *, uri: str | Path, collection: str = DEFAULT_COLLECTION, token: str | None = None,
                 index_type: str | None = None, batch_size: int = 1000) -> None:
        pymilvus = _import_milvus()
        self.dim = int(dim)
        self.collection = collection
        self.batch_size = int(batch_size)
        uri = str(uri)
        self.lite = not uri.startswith(("http://", "https://", "tcp://", "grpc://"))
        if self.lite:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.client = pymilvus.MilvusClient(uri=uri, token=token or "")
        # Lite only has FLAT/IVF; a server gets HNSW unless told otherwise
        self.index_type = index_type or ("FLAT" if self.lite else "HNSW")
        self._ensure_collection(pymilvus)

    def _ensure_collection(self, pymilvus) -> None:  # noqa: ANN001
        if self.client.has_collection(self.collection):
            fields = self.client.describe_collection(self.collection).get("fields", [])
            for field in fields:
                size = field.get("params", {}).get("dim")
                if size is not None and int(size) != self.dim:
                    raise ConflictError(f"Milvus collection {self.collection!r} holds {size}-d vectors, "
                                         f"not {self.dim}-d", code="dim_mismatch")
            self.client.load_collection(self.collection)
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
        schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        params = {"M": 16, "efConstruction": 200} if self.index_type == "HNSW" else {}
        index.add_index("vector", index_type=self.index_type, metric_type="COSINE", params=params)
        self.client.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")

    # --- writes -------------------------------------------------------------------------------
    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        vectors = self._check(vectors)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        last = {i: row for row, i in enumerate(ids)}  # one call, one id twice: the last one wins
        rows = [{"id": i, "vector": vectors[row].tolist()} for i, row in last.items()]
        for start in range(0, len(rows), self.batch_size):
            self.client.upsert(self.collection, rows[start : start + self.batch_size])

    def remove(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        for start in range(0, len(ids), self.batch_size):
            self.client.delete(self.collection, ids=ids[start : start + self.batch_size])

    # --- reads --------------------------------------------------------------------------------
    def _search(self, queries: np.ndarray, limit: int, params: dict | None = None) -> list[list[Hit]]:
        queries = self._check(queries)
        if limit <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        search_params = {"metric_type": "COSINE", "params": params or {}}
        results = self.client.search(self.collection, data=queries.tolist(), limit=min(limit, MAX_TOPK),
                                     output_fields=["id"], search_params=search_params, consistency_level="Strong")
        return [[Hit(int(r["id"]), min(1.0, float(r["distance"]))) for r in row] for row in results]

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        return self._search(queries, min(int(k), len(self)))

    def range_search(self, queries: np.ndarray, min_cosine: float) -> list[list[Hit]]:
        # Milvus keeps radius < distance <= range_filter for COSINE
        params = {"radius": float(min_cosine) - 1e-6, "range_filter": 1.0 + 1e-6}
        rows = self._search(queries, len(self), params)
        return [sorted((h for h in row if h.cosine >= min_cosine - 1e-6), key=lambda h: -h.cosine) for row in rows]

    def _iterate(self, fields: list[str], batch_size: int) -> Iterator[list[dict]]:
        iterator = self.client.query_iterator(self.collection, batch_size=batch_size, output_fields=fields,
                                              consistency_level="Strong")
        try:
            while True:
                rows = iterator.next()
                if not rows:
                    return
                yield rows
        finally:
            iterator.close()

    def ids(self) -> np.ndarray:
        chunks = [np.asarray([int(r["id"]) for r in rows], dtype=np.int64)
                  for rows in self._iterate(["id"], self.batch_size * 8)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    def get(self, ids: Sequence[int]) -> np.ndarray:
        wanted = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        found: dict[int, list[float]] = {}
        unique = list(dict.fromkeys(wanted))
        for start in range(0, len(unique), self.batch_size):
            for row in self.client.get(self.collection, ids=unique[start : start + self.batch_size],
                                       output_fields=["id", "vector"]):
                found[int(row["id"])] = row["vector"]
        missing = [i for i in unique if i not in found]
        if missing:
            raise KeyError(f"ids not in the store: {missing[:10]}")
        if not wanted:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray([found[i] for i in wanted], dtype=np.float32)

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for rows in self._iterate(["id", "vector"], min(batch_size, MAX_TOPK)):
            yield (np.asarray([int(r["id"]) for r in rows], dtype=np.int64),
                   np.asarray([r["vector"] for r in rows], dtype=np.float32))

    def __len__(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    @property
    def is_trained(self) -> bool:
        return True

    def flush(self) -> None:
        self.client.flush(self.collection)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "MilvusStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
