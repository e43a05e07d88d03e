"""Concurrent forwards are batched into one engine call and give the same vectors as one call each."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lookalike.embed import CoalescingForward


def _inputs(embedder, sample_photos) -> list[np.ndarray]:
    return [embedder.preprocessing.to_array([embedder.load(path)]) for path in sample_photos.values()]


class _HeldFirstCall:
    """Wraps a real forward; the first call waits until the test releases it, so others queue."""

    def __init__(self, forward) -> None:
        self.forward = forward
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batch_sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        if len(self.batch_sizes) == 1:
            self.entered.set()
            assert self.release.wait(60)
        return self.forward(batch)


def _run_concurrently(coalescer: CoalescingForward, held: _HeldFirstCall, inputs: list[np.ndarray]) -> list:
    results: list = [None] * len(inputs)

    def call(i: int) -> None:
        try:
            results[i] = coalescer(inputs[i])
        except Exception as exc:  # noqa: BLE001 - handed to the test
            results[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert held.entered.wait(60)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, len(inputs))]
    for t in others:
        t.start()
    while True:  # every other caller is queued behind the held engine call
        with coalescer._lock:
            if len(coalescer._queue) == len(inputs) - 1:
                break
        threading.Event().wait(0.005)
    held.release.set()
    for t in [first, *others]:
        t.join(60)
    return results


def test_waiting_forwards_are_batched_and_match_sequential(embedder, sample_photos):
    inputs = _inputs(embedder, sample_photos)
    engine = embedder.forward.forward if isinstance(embedder.forward, CoalescingForward) else embedder.forward
    sequential = [engine(x) for x in inputs]
    held = _HeldFirstCall(engine)
    coalescer = CoalescingForward(held, max_rows=32)

    results = _run_concurrently(coalescer, held, inputs)

    assert held.batch_sizes == [1, len(inputs) - 1]  # the held call, then everyone who waited, at once
    assert coalescer.calls == 2
    for got, want in zip(results, sequential):
        assert isinstance(got, np.ndarray) and got.shape == want.shape
        cos = float(np.sum(got * want) / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cos >= 0.9999


def test_max_rows_splits_the_waiting_callers(embedder, sample_photos):
    inputs = _inputs(embedder, sample_photos)[:5]
    engine = embedder.forward.forward if isinstance(embedder.forward, CoalescingForward) else embedder.forward
    held = _HeldFirstCall(engine)
    coalescer = CoalescingForward(held, max_rows=2)

    results = _run_concurrently(coalescer, held, inputs)

    assert held.batch_sizes == [1, 2, 2]
    assert all(isinstance(r, np.ndarray) for r in results)


def test_an_engine_error_reaches_every_caller_of_that_call_and_the_next_call_works(embedder, sample_photos):
    inputs = _inputs(embedder, sample_photos)[:4]
    engine = embedder.forward.forward if isinstance(embedder.forward, CoalescingForward) else embedder.forward

    class Failing(_HeldFirstCall):
        def __call__(self, batch):
            out = super().__call__(batch)
            if len(self.batch_sizes) == 2:
                raise RuntimeError("engine failed")
            return out

    held = Failing(engine)
    coalescer = CoalescingForward(held)
    results = _run_concurrently(coalescer, held, inputs)

    assert isinstance(results[0], np.ndarray)
    assert all(isinstance(r, RuntimeError) for r in results[1:])
    assert coalescer(inputs[0]).shape == results[0].shape  # not stuck busy


def test_concurrent_encodes_equal_sequential_ones(embedder, settings, sample_photos):
    # OpenVINO's throughput streams queue concurrent requests themselves; otherwise forwards are coalesced
    streams = embedder.backend == "openvino" and settings.openvino_hint == "throughput"
    assert isinstance(embedder.forward, CoalescingForward) != streams
    paths = list(sample_photos.values())
    sequential = embedder.encode(paths)
    out: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, embedder.encode([paths[i]])[0]))
               for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(len(paths)):
        assert float(out[i] @ sequential[i]) >= 0.9999


@pytest.mark.parametrize("n", [1, 3])
def test_single_caller_is_a_plain_forward(embedder, sample_photos, n):
    inputs = np.concatenate(_inputs(embedder, sample_photos)[:n])
    engine = embedder.forward.forward if isinstance(embedder.forward, CoalescingForward) else embedder.forward
    coalescer = CoalescingForward(engine)
    np.testing.assert_allclose(coalescer(inputs), engine(inputs), rtol=1e-5, atol=1e-5)
    assert coalescer.calls == 1
