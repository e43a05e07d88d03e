"""One inference pool for the whole server, with a bounded queue.

Requests queue here, and when the queue is full the caller gets 503 + Retry-After instead of an
ever-growing latency. ``workers`` threads take requests from the queue: while one request decodes
its images (Pillow releases the GIL), another's forward runs. The engine never oversubscribes the
cores: an engine that spreads one forward over all cores (ONNX Runtime; OpenVINO's default
latency hint) runs one at a time through the embedder's ``CoalescingForward``, which batches those
that wait; OpenVINO's throughput hint queues concurrent forwards onto one single-thread stream per
core itself (benchmarks/results/serving.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from lookalike.errors import BusyError

T = TypeVar("T")


class InferenceGate:
    def __init__(self, max_queue: int, workers: int = 2) -> None:
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._pending >= self.max_queue:
                raise BusyError(f"server busy: {self._pending} requests waiting for inference; retry shortly")
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, lambda: fn(*args))
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
