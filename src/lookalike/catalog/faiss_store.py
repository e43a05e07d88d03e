"""The embedded vector store: FAISS behind the ``VectorStore`` Protocol.

The index type is configuration, not code: any ``faiss.index_factory`` string ("Flat",
"HNSW32", "IVF4096,Flat", "IVF4096,SQ8", ...) under an ``IndexIDMap2`` so ids are the catalog's
row ids. Inner product on L2-normalized vectors is the cosine. Saving writes a temp file and
``os.replace``s it, so the file on disk is always a whole index (old or new), never half of one.

Indexes that cannot delete (HNSW) get tombstones: removed ids are filtered out of answers, saved
next to the index (``<file>.tombstones.npy``), and the index is rebuilt without them once they
pass a fifth of it (a rebuild at 1M vectors takes minutes, so not on every save).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .store import Hit


def _faiss():
    import faiss  # imported lazily: nothing heavy at import time

    return faiss


def fsync_replace(tmp: Path, final: Path) -> None:
    """Durably move ``tmp`` over ``final`` (fsync the file, rename, fsync the folder)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FaissStore:
    """A FAISS index with integer ids, optionally persisted to ``path``."""

    def __init__(self, dim: int, factory: str = "Flat", *, path: Path | str | None = None,
                 search_params: str = "", index=None) -> None:  # noqa: ANN001 - a faiss.Index
        faiss = _faiss()
        self.dim = int(dim)
        self.factory = factory
        self.path = Path(path) if path is not None else None
        self.search_params = search_params
        if index is None:
            inner = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
            # IVF indexes take ids natively (an IDMap over IVF breaks on removal); others get IDMap2
            index = inner if _ivf(inner) is not None else faiss.IndexIDMap2(inner)
        self.index = index
        self._idmap = isinstance(index, faiss.IndexIDMap2)
        self.inner = faiss.downcast_index(index.index) if self._idmap else index
        ivf = _ivf(self.inner)
        if ivf is not None:  # lookups by id (get, removal bookkeeping) need a direct map
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._tombstones: set[int] = set()
        self._ids: set[int] = set(self._id_array().tolist())
        if self.path is not None and self._tombstone_path.is_file():
            dead = np.load(self._tombstone_path)
            self._tombstones = set(dead.tolist()) & self._ids
        self._apply_search_params()

    @classmethod
    def open(cls, path: Path | str, dim: int, factory: str = "Flat", search_params: str = "") -> "FaissStore":
        """Load ``path`` if it holds an index of this shape, else start an empty one there."""
        path = Path(path)
        if path.is_file():
            faiss = _faiss()
            index = faiss.read_index(str(path))
            if index.d == dim:  # read_index already returns the concrete (owning) type
                return cls(dim, factory, path=path, search_params=search_params, index=index)
        return cls(dim, factory, path=path, search_params=search_params)

    # --- VectorStore ----------------------------------------------------------------------
    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if len(ids) == 0:
            return
        if not self.index.is_trained:
            self.train(vectors)
        present = [int(i) for i in ids if int(i) in self._ids]
        if present:
            self._remove_now(present)
            if self._tombstones.intersection(present):  # a tombstoned id comes back: drop the old copy now
                self.compact(force=True)
        self.index.add_with_ids(vectors, ids)
        self._ids.update(ids.tolist())

    def train(self, vectors: np.ndarray) -> None:
        """IVF/PQ indexes learn their quantizers from a sample of real vectors first."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        try:
            self.index.train(vectors)
        except RuntimeError as exc:
            raise ValueError(f"index {self.factory!r} cannot be trained on {len(vectors)} vectors: {exc}") from exc
        self._apply_search_params()

    def remove(self, ids: Sequence[int]) -> None:
        known = [int(i) for i in ids if int(i) in self._ids and int(i) not in self._tombstones]
        if known:
            self._remove_now(known)

    def _remove_now(self, ids: list[int]) -> None:
        faiss = _faiss()
        try:
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
            self._ids.difference_update(ids)
        except RuntimeError:  # e.g. HNSW: no deletion; filter now, compact before saving
            self._tombstones.update(ids)
            self.compact()

    def compact(self, *, force: bool = False) -> None:
        """Rebuild without tombstoned vectors (when they pile up, and always before saving)."""
        if not self._tombstones or (not force and len(self._tombstones) * 5 < max(len(self._ids), 1)):
            return
        all_ids = self._id_array()
        keep = ~np.isin(all_ids, np.fromiter(self._tombstones, dtype=np.int64))
        vectors = self._reconstruct_all()[keep]
        fresh = FaissStore(self.dim, self.factory, path=self.path, search_params=self.search_params)
        if not fresh.index.is_trained:
            fresh.train(vectors)
        fresh.index.add_with_ids(vectors, all_ids[keep])
        self.index, self.inner = fresh.index, fresh.inner
        self._ids = set(all_ids[keep].tolist())
        self._tombstones = set()
        self._apply_search_params()

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        queries = self._queries(queries)
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        fetch = min(self.index.ntotal, k + len(self._tombstones))
        scores, found = self.index.search(queries, fetch)
        out = []
        for row_s, row_i in zip(scores, found):
            hits = [Hit(int(i), float(s)) for s, i in zip(row_s, row_i) if i >= 0 and int(i) not in self._tombstones]
            out.append(hits[:k])
        return out

    def range_search(self, queries: np.ndarray, min_cosine: float) -> list[list[Hit]]:
        queries = self._queries(queries)
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        try:
            # FAISS keeps inner products strictly above the radius
            lims, scores, found = self.index.range_search(queries, float(min_cosine) - 1e-6)
        except RuntimeError:  # index type without range search: a wide k-NN filtered by score
            rows = self.search(queries, min(len(self), 256))
            return [[h for h in hits if h.cosine >= min_cosine - 1e-6] for hits in rows]
        out = []
        for q in range(len(queries)):
            sl = slice(int(lims[q]), int(lims[q + 1]))
            hits = [Hit(int(i), float(s)) for s, i in zip(scores[sl], found[sl]) if int(i) not in self._tombstones]
            hits.sort(key=lambda h: -h.cosine)
            out.append(hits)
        return out

    def ids(self) -> np.ndarray:
        ids = self._id_array()
        if self._tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))]
        return ids

    def get(self, ids: Sequence[int]) -> np.ndarray:
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for row, i in enumerate(ids):
            if int(i) not in self._ids or int(i) in self._tombstones:
                raise KeyError(f"id {int(i)} is not in the store")
            out[row] = self.index.reconstruct(int(i))
        return out

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        all_ids = self._id_array()
        dead = np.fromiter(self._tombstones, dtype=np.int64)
        for start in range(0, len(all_ids), batch_size):
            n = min(batch_size, len(all_ids) - start)
            ids = all_ids[start : start + n]
            if self._idmap:  # internal order = id_map order: one bulk copy
                vectors = self.inner.reconstruct_n(start, n)
            else:
                vectors = self.index.reconstruct_batch(ids)
            if len(dead):
                keep = ~np.isin(ids, dead)
                ids, vectors = ids[keep], vectors[keep]
            yield ids, vectors

    def __len__(self) -> int:
        return len(self._ids) - len(self._tombstones)

    def flush(self) -> None:
        if self.path is None:
            return
        self.compact()
        faiss = _faiss()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # tombstones first: applied to an older index they only hide ids that were deleted anyway
        if self._tombstones:
            tmp = self._tombstone_path.with_name(self._tombstone_path.name + ".tmp.npy")
            np.save(tmp, np.fromiter(self._tombstones, dtype=np.int64))
            fsync_replace(tmp, self._tombstone_path)
        tmp = self.path.with_name(self.path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        fsync_replace(tmp, self.path)
        if not self._tombstones:
            self._tombstone_path.unlink(missing_ok=True)

    def close(self) -> None:
        self.flush()

    # --- helpers --------------------------------------------------------------------------
    @property
    def _tombstone_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".tombstones.npy")

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def memory_bytes(self) -> int:
        """Size of the serialized index: a fair proxy for its RAM."""
        return int(_faiss().serialize_index(self.index).nbytes)

    def _id_array(self) -> np.ndarray:
        faiss = _faiss()
        if self._idmap:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
        ivf = _ivf(self.inner)
        if ivf is None or ivf.ntotal == 0:
            return np.zeros(0, dtype=np.int64)
        lists = ivf.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(ivf.nlist) if lists.list_size(i)]
        return np.sort(np.concatenate(parts)).astype(np.int64)

    def _reconstruct_all(self) -> np.ndarray:
        n = self.index.ntotal
        if not n:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.inner.reconstruct_n(0, n) if self._idmap else self.index.reconstruct_batch(self._id_array())

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return queries.reshape(-1, self.dim)

    def _apply_search_params(self) -> None:
        """``"nprobe=16,efSearch=64"``: each applied where the index type has it, ignored elsewhere."""
        if not self.search_params:
            return
        faiss = _faiss()
        space = faiss.ParameterSpace()
        for item in self.search_params.split(","):
            if "=" not in item:
                continue
            name, value = item.split("=", 1)
            try:
                space.set_index_parameter(self.inner, name.strip(), float(value))
            except RuntimeError:
                pass


def _ivf(index):  # noqa: ANN001, ANN202 - faiss objects
    """The IVF part of an index, or None (Flat, HNSW)."""
    try:
        return _faiss().extract_index_ivf(index)
    except RuntimeError:
        return None
