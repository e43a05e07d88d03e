"""The VectorStore contract, run against every implementation in ``STORE_FACTORIES``."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog.stores.base import VectorStore

DIM = 32


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(store_factory, tmp_path) -> VectorStore:
    s = store_factory(DIM, tmp_path)
    yield s
    s.close()


@pytest.fixture
def filled(store):
    vectors = unit_vectors(400)
    store.add(np.arange(1000, 1400), vectors)
    return store, vectors


def test_is_a_vector_store(store):
    assert isinstance(store, VectorStore)
    assert store.dim == DIM
    assert len(store) == 0
    assert store.search(unit_vectors(1), 5) == [[]]


def test_search_finds_itself_first(filled):
    store, vectors = filled
    results = store.search(vectors[:10], 5)
    assert [hits[0].id for hits in results] == list(range(1000, 1010))
    for hits in results:
        assert hits[0].cosine == pytest.approx(1.0, abs=1e-4)
        assert [h.cosine for h in hits] == sorted((h.cosine for h in hits), reverse=True)
        assert len(hits) == 5


def test_remove_and_readd_replaces(filled):
    store, vectors = filled
    store.remove([1000, 1001, 99999])
    assert len(store) == 398
    assert 1000 not in set(store.ids().tolist())
    assert all(h.id not in (1000, 1001) for h in store.search(vectors[:2], 10)[0])
    store.add([1002], vectors[0:1])  # re-adding an id replaces its vector
    assert len(store) == 398
    np.testing.assert_allclose(store.get([1002])[0], vectors[0], atol=1e-5)
    assert store.search(vectors[0:1], 1)[0][0].id == 1002


def test_range_search(filled):
    store, vectors = filled
    twin = vectors[5] + 0.05 * unit_vectors(1, seed=9)[0]
    store.add([5000], (twin / np.linalg.norm(twin))[None, :])
    hits = store.range_search(vectors[5:6], 0.95)[0]
    assert {h.id for h in hits} == {1005, 5000}
    assert all(h.cosine >= 0.95 - 1e-5 for h in hits)


def test_ids_get_and_batches(filled):
    store, vectors = filled
    assert sorted(store.ids().tolist()) == list(range(1000, 1400))
    np.testing.assert_allclose(store.get([1010, 1003]), vectors[[10, 3]], atol=1e-5)
    seen = {}
    for ids, vecs in store.iter_batches(batch_size=64):
        assert len(ids) == len(vecs) <= 64
        seen.update(zip(ids.tolist(), vecs))
    assert sorted(seen) == list(range(1000, 1400))
    np.testing.assert_allclose(seen[1399], vectors[399], atol=1e-5)


def test_flush_persists(filled, store_factory, tmp_path):
    store, vectors = filled
    store.remove([1000])
    store.flush()
    from lookalike.catalog.stores.faiss import FaissStore

    if not isinstance(store, FaissStore):
        pytest.skip("reopening is implementation-specific")
    reopened = FaissStore.open(store.path, DIM, store.factory, store.search_params)
    assert len(reopened) == 399
    assert reopened.search(vectors[1:2], 1)[0][0].id == 1001
    assert not list(tmp_path.glob("*.tmp"))
