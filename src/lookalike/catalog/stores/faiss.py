"""The embedded vector store: FAISS behind the ``VectorStore`` Protocol.

The index type is configuration, not code: any ``faiss.index_factory`` string ("Flat",
"HNSW32", "IVF4096,Flat", "IVF4096,SQ8", ...) under an ``IndexIDMap2`` so ids are the catalog's
row ids. Inner product on L2-normalized vectors is the cosine. Saving writes a temp file and
``os.replace``s it, so the file on disk is always a whole index (old or new), never half of one.

Indexes that cannot delete (HNSW) get tombstones: removed ids are filtered out of answers, saved
next to the index (``<file>.tombstones.npy``), and the index is rebuilt without them once they
pass a fifth of it (a rebuild at 1M vectors takes minutes, so not on every save).

Large catalogs can keep a compressed index in RAM (e.g. "PCA128,HNSW32": ~0.8 KB instead of
5 KB per vector) and re-rank its top ``refine`` candidates exactly with the full vectors fetched
from where they already live (``fetch_vectors``: SQLite, a memory map). See ``rerank_ids``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from lookalike.catalog.stores.base import Hit


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
                 search_params: str = "", index=None,  # noqa: ANN001 - a faiss.Index
                 refine: int = 0, fetch_vectors: VectorFetcher | None = None) -> None:
        """``refine`` > 0 with ``fetch_vectors``: answers are the index's top max(k, refine)
        candidates re-scored with exact cosines (and ``get`` returns the exact vectors)."""
        faiss = _faiss()
        self.dim = int(dim)
        self.refine = int(refine) if fetch_vectors is not None else 0
        self.fetch_vectors = fetch_vectors
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
    def open(cls, path: Path | str, dim: int, factory: str = "Flat", search_params: str = "", *,
             refine: int = 0, fetch_vectors: VectorFetcher | None = None) -> "FaissStore":
        """Load ``path`` if it holds an index of this shape, else start an empty one there."""
        path = Path(path)
        extra = {"search_params": search_params, "refine": refine, "fetch_vectors": fetch_vectors}
        if path.is_file():
            faiss = _faiss()
            index = faiss.read_index(str(path))
            if index.d == dim:  # read_index already returns the concrete (owning) type
                return cls(dim, factory, path=path, index=index, **extra)
        return cls(dim, factory, path=path, **extra)

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
            train_index(self.index, vectors)
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
        fresh = FaissStore(self.dim, self.factory, path=self.path, search_params=self.search_params,
                           refine=self.refine, fetch_vectors=self.fetch_vectors)
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
        if self.refine:
            fetch = min(self.index.ntotal, max(k, self.refine) + len(self._tombstones))
            _, found = self.index.search(queries, fetch)
            if self._tombstones:
                found = np.where(np.isin(found, np.fromiter(self._tombstones, dtype=np.int64)), -1, found)
            return rerank_ids(queries, found, self.fetch_vectors, k)
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
        if self.refine:  # compressed scores are approximate: a wide exact-re-ranked k-NN instead
            rows = self.search(queries, min(len(self), max(256, self.refine)))
            return [[h for h in hits if h.cosine >= min_cosine - 1e-6] for hits in rows]
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
            if not self.refine:
                out[row] = self.index.reconstruct(int(i))
        return self._exact(ids) if self.refine else out

    def iter_batches(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        all_ids = self._id_array()
        dead = np.fromiter(self._tombstones, dtype=np.int64)
        for start in range(0, len(all_ids), batch_size):
            n = min(batch_size, len(all_ids) - start)
            ids = all_ids[start : start + n]
            if self.refine:  # the index holds lossy codes; the full vectors live elsewhere
                vectors = self._exact(ids)
            elif self._idmap:  # internal order = id_map order: one bulk copy
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
        if self.refine:
            return self._exact(self._id_array())
        return self.inner.reconstruct_n(0, n) if self._idmap else self.index.reconstruct_batch(self._id_array())

    def _exact(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Full vectors of ``ids`` (any order, repeats allowed) from ``fetch_vectors``."""
        assert self.fetch_vectors is not None
        unique, where = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
        if not len(unique):
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self.fetch_vectors(unique), dtype=np.float32).reshape(len(unique), self.dim)
        return vectors[where.reshape(-1)]

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return queries.reshape(-1, self.dim)

    def _apply_search_params(self) -> None:
        """``"nprobe=16,efSearch=64"``: each applied where the index type has it, ignored elsewhere.

        ``efConstruction`` (HNSW build effort, FAISS default 40) is honoured too: at 1M vectors
        the default graph is too sparse for recall 0.95 at any affordable efSearch."""
        if not self.search_params:
            return
        faiss = _faiss()
        space = faiss.ParameterSpace()
        for item in self.search_params.split(","):
            if "=" not in item:
                continue
            name, value = item.split("=", 1)
            if name.strip() == "efConstruction":
                hnsw = _hnsw(self.inner)
                if hnsw is not None:
                    hnsw.efConstruction = int(float(value))
                continue
            try:
                space.set_index_parameter(self.inner, name.strip(), float(value))
            except RuntimeError:
                pass


VectorFetcher = Callable[[np.ndarray], np.ndarray]
"""Full float32 vectors of sorted unique ids, in that order (e.g. ``MetadataDB.vectors`` or a memory map)."""


def rerank_ids(queries: np.ndarray, ids: np.ndarray, fetch: VectorFetcher, k: int) -> list[list[Hit]]:
    """Exact cosines for each query's candidate ids (-1 = no candidate), best ``k`` first.

    A compressed index (PCA, SQ, PQ) ranks near-ties wrongly but still puts the true neighbours
    among its first few dozen candidates; re-scoring those with the full vectors, fetched from
    where they already live (SQLite, a memory map), restores exact order at compressed RAM.
    All rows are fetched in one call of sorted unique ids.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(len(ids), -1)
    ids = np.asarray(ids, dtype=np.int64)
    wanted = np.unique(ids[ids >= 0])
    if not len(wanted):
        return [[] for _ in range(len(ids))]
    vectors = np.asarray(fetch(wanted), dtype=np.float32).reshape(len(wanted), -1)
    out = []
    for query, row in zip(queries, ids):
        row = row[row >= 0]
        scores = vectors[np.searchsorted(wanted, row)] @ query
        order = np.argsort(-scores, kind="stable")[:k]
        out.append([Hit(int(row[j]), float(scores[j])) for j in order])
    return out


def train_index(index, vectors: np.ndarray) -> None:  # noqa: ANN001 - a faiss.Index
    """Train ``index``; a leading PCA learns from +-vectors so that it does not centre.

    FAISS's PCAMatrix subtracts the training mean, and inner products of centred projections
    lose each vector's ``x . mean`` term, which reorders neighbours: on 200k real-fitted vectors an
    exact search on centred PCA256 projections recalls 0.28 of the top-10 (0.50 after an exact
    re-rank of its top 32), on uncentred ones 0.95 (1.00 after the re-rank); see
    ``benchmarks/results/catalog_1m_refine.md``. Training on the vectors and their
    negatives gives a zero mean, so the PCA keeps the top directions of the uncentred second
    moment and the projected inner product approximates the cosine. The index behind the PCA
    then trains on the projected vectors themselves.
    """
    faiss = _faiss()
    wrappers, target = [], index
    while isinstance(target, faiss.IndexIDMap):
        wrappers.append(target)
        target = faiss.downcast_index(target.index)
    pca = None
    if isinstance(target, faiss.IndexPreTransform) and target.chain.size() == 1:
        pca = faiss.downcast_VectorTransform(target.chain.at(0))
    if not isinstance(pca, faiss.PCAMatrix):
        index.train(vectors)
        return
    pca.train(np.concatenate([vectors, -vectors]))
    inner = faiss.downcast_index(target.index)
    if not inner.is_trained:
        inner.train(pca.apply(vectors))
    for trained in [target, *wrappers]:
        trained.is_trained = True


def _hnsw(index):  # noqa: ANN001, ANN202 - faiss objects
    """The HNSW graph of an index (behind any pre-transform), or None."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    while isinstance(index, (faiss.IndexPreTransform, faiss.IndexIDMap)):
        index = faiss.downcast_index(index.index)
    return getattr(index, "hnsw", None)


def _ivf(index):  # noqa: ANN001, ANN202 - faiss objects
    """The IVF part of an index, or None (Flat, HNSW)."""
    try:
        return _faiss().extract_index_ivf(index)
    except RuntimeError:
        return None
