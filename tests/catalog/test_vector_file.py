"""vectors.f32: full vectors by id for the exact re-rank, read through a memory map."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog.vector_file import VectorFile


def test_rows_are_addressed_by_id_and_the_map_follows_the_file_as_it_grows(tmp_path):
    file = VectorFile(tmp_path / "v.f32", 8)
    rng = np.random.default_rng(0)
    first = rng.standard_normal((3, 8)).astype(np.float32)
    file.write([5, 1, 3], first)  # any order, with holes
    assert file.rows == 6
    np.testing.assert_array_equal(file.fetch(np.array([1, 3, 5])), first[[1, 2, 0]])
    assert not file.fetch(np.array([0, 2])).any()  # holes read as zeros
    later = rng.standard_normal((1, 8)).astype(np.float32)
    file.write([40], later)  # grows: the next fetch maps the longer file
    np.testing.assert_array_equal(file.fetch(np.array([40, 5])), np.concatenate([later, first[:1]]))
    assert not file.fetch(np.array([99])).any()  # past the end
    file.sync()
    file.close()
    reopened = VectorFile(tmp_path / "v.f32", 8)
    np.testing.assert_array_equal(reopened.fetch(np.array([3])), first[2:3])
    reopened.truncate()
    assert reopened.rows == 0
    with pytest.raises(ValueError):
        reopened.write([-1], first[:1])
    reopened.close()
