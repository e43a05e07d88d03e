"""Two independent pieces of one request's work on two cores: ``side_by_side(f, g)``, and a few
items of it shared by two threads: ``each_on_two_threads(items, work)``.

A pair request does everything twice (decode, resize, local features), and Pillow, OpenCV and
NumPy release the GIL while they work, so the second image's share can run on another core while
the calling thread does the first: a lone client's answer comes that much sooner. Under load the
cores are busy anyway and the work is the same, only spread. One small shared pool, made on first
use; on a single core everything runs in the calling thread.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")
R = TypeVar("R")

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor | None:
    global _POOL
    cores = os.cpu_count() or 1
    if cores < 2:
        return None
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="side-by-side")
        return _POOL


def side_by_side(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """``(first(), second())``, the second on a pool thread; errors propagate (first's first), and
    the second is always waited for, so no work outlives the call."""
    pool = _pool()
    if pool is None:
        return first(), second()
    future = pool.submit(second)
    try:
        a = first()
    finally:
        b = future.result()
    return a, b


def each_on_two_threads(items: Sequence[T], work: Callable[[T], R]) -> dict[T, R]:
    """``{item: work(item)}``, two threads taking the next item as they finish one (OpenCV
    releases the GIL): items of uneven cost (a search hit needing the second look costs several
    times one that does not) keep both threads busy, where a fixed split would not."""
    pending = iter(items)
    lock = threading.Lock()
    out: dict[T, R] = {}
    done = object()

    def worker() -> None:
        while True:
            with lock:
                item = next(pending, done)
            if item is done:
                return
            out[item] = work(item)  # type: ignore[index,arg-type]

    if len(items) > 1:
        side_by_side(worker, worker)
    else:
        worker()
    return out
