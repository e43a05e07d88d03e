"""A compressed FAISS index + exact re-rank from full vectors kept elsewhere (``refine``).

The whole VectorStore contract suite runs again here on a "PCA24,HNSW32" store whose full
vectors come from a side table (standing in for the catalog's SQLite), plus checks of
``rerank_ids`` and of the uncentred PCA training. Vectors are random (seeded) with the shape
that matters here: a large shared mean, as real embeddings have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog.stores.faiss import FaissStore, rerank_ids, train_index
from lookalike.catalog.stores.base import Hit

from .test_store_contract import (  # noqa: F401 - collected again here, on the refine store
    filled,
    store,
    test_flush_persists,
    test_ids_get_and_batches,
    test_is_a_vector_store,
    test_range_search,
    test_remove_and_readd_replaces,
    test_search_finds_itself_first,
)


class SideTable:
    """The durable full vectors (the catalog's SQLite in production); counts its fetches."""

    def __init__(self) -> None:
        self.vectors: dict[int, np.ndarray] = {}
        self.calls: list[np.ndarray] = []

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        self.calls.append(np.asarray(ids))
        return np.stack([self.vectors[int(i)] for i in ids])


def refine_store(dim: int, tmp_path: Path, factory: str = "PCA24,HNSW32", refine: int = 64) -> FaissStore:
    side = SideTable()
    refined = FaissStore(dim, factory, path=tmp_path / "vectors.faiss", search_params="efSearch=128",
                         refine=refine, fetch_vectors=side)
    plain_add = refined.add

    def add(ids, vectors) -> None:  # noqa: ANN001 - the catalog writes SQLite first, then the index
        side.vectors.update(zip((int(i) for i in ids), np.asarray(vectors, dtype=np.float32)))
        plain_add(ids, vectors)

    refined.add = add  # type: ignore[method-assign]
    return refined


@pytest.fixture
def store_factory():
    return refine_store


def embedding_like(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Random seeded vectors with a big common mean and a few strong directions, L2-normalized."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dim).astype(np.float32)
    basis = rng.standard_normal((8, dim)).astype(np.float32) * 0.5
    v = mean + rng.standard_normal((n, 8)).astype(np.float32) @ basis
    v += 0.1 * rng.standard_normal((n, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_rerank_ids_orders_by_exact_cosine_with_one_fetch():
    vectors = np.eye(4, dtype=np.float32)
    side = SideTable()
    side.vectors = {10 + i: vectors[i] for i in range(4)}
    query = np.array([[0.1, 0.9, 0.5, 0.0]], dtype=np.float32)
    hits = rerank_ids(np.vstack([query, query]), np.array([[13, 10, 11, -1], [12, 12, -1, -1]]), side, 2)
    assert hits[0] == [Hit(11, pytest.approx(0.9)), Hit(10, pytest.approx(0.1))]
    assert [h.id for h in hits[1]] == [12, 12]
    assert len(side.calls) == 1 and side.calls[0].tolist() == [10, 11, 12, 13]  # sorted, unique
    assert rerank_ids(query, np.array([[-1, -1]]), side, 2) == [[]]


def test_train_index_makes_pca_uncentred():
    import faiss

    data = embedding_like(2000)
    index = faiss.index_factory(64, "PCA16,Flat", faiss.METRIC_INNER_PRODUCT)
    train_index(index, data)
    pca = faiss.downcast_VectorTransform(index.chain.at(0))
    assert index.is_trained
    assert np.abs(faiss.vector_to_array(pca.mean)).max() < 1e-5
    assert np.abs(faiss.vector_to_array(pca.b)).max() < 1e-5


def test_uncentred_pca_ranks_better_than_centred():
    """The reason for ``train_index``: centring drops each vector's x.mean term from its score."""
    import faiss

    both = embedding_like(5100)
    data, queries = both[:5000], both[5000:]
    truth = faiss.knn(queries, data, 10, faiss.METRIC_INNER_PRODUCT)[1]

    def recall(train) -> float:  # noqa: ANN001
        index = faiss.index_factory(64, "PCA16,Flat", faiss.METRIC_INNER_PRODUCT)
        train(index)
        index.add(data)
        found = index.search(queries, 10)[1]
        return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))

    centred = recall(lambda index: index.train(data))
    uncentred = recall(lambda index: train_index(index, data))
    assert uncentred >= 0.95 and centred < 0.7  # measured: 0.99 vs 0.44


def test_refine_store_matches_exact_search(tmp_path):
    both = embedding_like(3050)
    data, queries = both[:3000], both[3000:]
    exact = FaissStore(64, "Flat")
    exact.add(np.arange(3000), data)
    refined = refine_store(64, tmp_path, factory="PCA16,HNSW32", refine=64)
    refined.add(np.arange(3000), data)
    truth, got = exact.search(queries, 10), refined.search(queries, 10)
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(truth, got)])
    assert recall >= 0.95
    for row, query in zip(got, queries):  # scores are the exact cosines, best first
        np.testing.assert_allclose([h.cosine for h in row], data[[h.id for h in row]] @ query, atol=1e-5)
        assert [h.cosine for h in row] == sorted((h.cosine for h in row), reverse=True)
    np.testing.assert_array_equal(refined.get([5, 7, 5]), data[[5, 7, 5]])  # exact vectors, not PCA codes


def test_refine_store_survives_compaction(tmp_path):
    data = embedding_like(500)
    refined = refine_store(64, tmp_path, factory="PCA16,HNSW32", refine=32)
    refined.add(np.arange(500), data)
    refined.remove(list(range(200)))  # HNSW cannot delete: tombstones, then a rebuild from exact vectors
    assert len(refined) == 300 and not refined._tombstones
    hits = refined.search(data[250:251], 5)[0]
    assert hits[0].id == 250 and hits[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert all(h.id >= 200 for h in hits)


def test_ef_construction_is_applied_from_search_params(tmp_path):
    from lookalike.catalog.stores.faiss import _hnsw

    refined = FaissStore(64, "PCA16,HNSW32", search_params="efSearch=96,efConstruction=160")
    hnsw = _hnsw(refined.inner)
    assert (hnsw.efConstruction, hnsw.efSearch) == (160, 96)
    assert _hnsw(FaissStore(64, "Flat").inner) is None
