"""parallel.side_by_side: a pair's two halves on two cores, same results as one after the other."""

from __future__ import annotations

import os
import threading
import time

import pytest

from lookalike.comparison import compare_with
from lookalike.parallel import side_by_side
from lookalike.similarity import thresholds_for


def test_results_come_back_in_order_and_the_second_runs_elsewhere():
    caller = threading.get_ident()
    a, b = side_by_side(lambda: ("a", threading.get_ident()), lambda: ("b", threading.get_ident()))
    assert a == ("a", caller) and b[0] == "b"
    assert b[1] != caller or (os.cpu_count() or 1) < 2  # one core: everything runs in the caller


def test_an_error_propagates_and_the_other_half_is_still_waited_for():
    done = threading.Event()

    def slow() -> str:
        time.sleep(0.05)
        done.set()
        return "finished"

    with pytest.raises(ValueError, match="first failed"):
        side_by_side(lambda: (_ for _ in ()).throw(ValueError("first failed")), slow)
    assert done.is_set()  # nothing outlives the call
    with pytest.raises(KeyError):
        side_by_side(lambda: 1, lambda: {}["missing"])


def test_a_pair_prepared_side_by_side_scores_as_the_embedder_does(embedder, sample_photos, settings):
    a, b = sample_photos["chelsea"], sample_photos["coffee"]
    result = compare_with(embedder, a, b, thresholds_for(embedder.model_name, embedder.input_size, settings))
    expected = float(embedder.encode(a) @ embedder.encode(b))
    assert result.cosine == pytest.approx(expected, abs=1e-5)
