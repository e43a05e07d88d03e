"""The catalog's VectorStore contract suite (tests/catalog/test_store_contract.py), run on Milvus Lite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="needs pymilvus + milvus-lite")
pytest.importorskip("milvus_lite", reason="needs milvus-lite (the embedded Milvus used in tests)")

from tests.catalog.test_store_contract import *  # noqa: E402,F401,F403 - the shared contract suite
from tests.catalog.test_store_contract import DIM, unit_vectors  # noqa: E402

pytestmark = [pytest.mark.scale, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _milvus_lite(dim: int, tmp_path: Path):
    from lookalike.catalog.stores.milvus import MilvusStore

    return MilvusStore(dim, uri=tmp_path / "milvus.db", batch_size=64)


@pytest.fixture(params=[pytest.param(_milvus_lite, id="milvus-lite")])
def store_factory(request):
    return request.param


def test_milvus_reopens_with_what_was_written(tmp_path):
    from lookalike.catalog.stores.milvus import MilvusStore

    vectors = unit_vectors(300)
    with MilvusStore(DIM, uri=tmp_path / "m.db") as store:
        store.add(np.arange(1, 301), vectors)
        store.remove([1, 2])
        store.flush()
    with MilvusStore(DIM, uri=tmp_path / "m.db") as reopened:
        assert len(reopened) == 298
        assert reopened.search(vectors[5:6], 1)[0][0].id == 6
