"""The catalog's VectorStore contract suite (tests/catalog/test_store_contract.py), run on Qdrant.

The test functions and fixtures are imported, not copied, so the suite stays one suite; only
``store_factory`` is provided here (Qdrant local mode in tmp_path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="needs the [scale] extra (qdrant-client)")

from tests.catalog.test_store_contract import *  # noqa: E402,F401,F403 - the shared contract suite
from tests.catalog.test_store_contract import DIM, unit_vectors  # noqa: E402

pytestmark = pytest.mark.scale


def _qdrant_local(dim: int, tmp_path: Path):
    from lookalike.catalog.stores.qdrant import QdrantStore

    return QdrantStore(dim, path=tmp_path / "qdrant", batch_size=64)  # small batches: exercise batching


@pytest.fixture(params=[pytest.param(_qdrant_local, id="qdrant-local")])
def store_factory(request):
    return request.param


def test_qdrant_reopens_with_what_was_written(tmp_path):
    from lookalike.catalog.stores.qdrant import QdrantStore

    vectors = unit_vectors(300)
    store = QdrantStore(DIM, path=tmp_path / "q")
    store.add(np.arange(1, 301), vectors)
    store.remove([1, 2])
    store.flush()
    store.close()
    with QdrantStore(DIM, path=tmp_path / "q") as reopened:
        assert len(reopened) == 298
        assert reopened.search(vectors[5:6], 1)[0][0].id == 6


def test_qdrant_refuses_a_collection_of_another_dim(tmp_path):
    from lookalike.catalog.stores.qdrant import QdrantStore
    from lookalike.errors import LookalikeError

    QdrantStore(DIM, path=tmp_path / "q").close()
    with pytest.raises(LookalikeError, match="holds 32-d vectors"):
        QdrantStore(DIM * 2, path=tmp_path / "q")


def test_qdrant_range_search_pages_past_one_reply(tmp_path):
    from lookalike.catalog.stores.qdrant import QdrantStore

    base = unit_vectors(1)[0]
    near = base + 0.02 * unit_vectors(50, seed=3)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    with QdrantStore(DIM, path=tmp_path / "q") as store:
        store.add(np.arange(50), near)
        store.add(np.arange(100, 400), unit_vectors(300, seed=4))
        hits = store.range_search(base[None, :], 0.9, page=7)[0]  # 50 hits over 8 pages
    assert {h.id for h in hits} == set(range(50))


def test_qdrant_rejects_negative_ids(tmp_path):
    from lookalike.catalog.stores.qdrant import QdrantStore

    with QdrantStore(DIM, path=tmp_path / "q") as store, pytest.raises(ValueError, match="non-negative"):
        store.add([-1], unit_vectors(1))


def test_qdrant_local_store_open_twice_is_a_clear_409(tmp_path):
    from lookalike.catalog.stores.qdrant import QdrantStore
    from lookalike.errors import LookalikeError

    with QdrantStore(DIM, path=tmp_path / "q"):
        with pytest.raises(LookalikeError, match="open in another process") as info:
            QdrantStore(DIM, path=tmp_path / "q")
    assert info.value.status == 409
