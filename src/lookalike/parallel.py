"""Two independent pieces of one request's work on two cores: ``side_by_side(f, g)``.

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
from typing import Callable, TypeVar

A = TypeVar("A")
B = TypeVar("B")

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
