"""The inference gate: a bounded queue that answers "busy" instead of growing, and several workers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lookalike.api.inference import InferenceGate
from lookalike.errors import BusyError


def test_a_full_queue_raises_busy_and_frees_its_slot_afterwards():
    release = threading.Event()

    async def scenario() -> None:
        gate = InferenceGate(max_queue=1, workers=1)
        try:
            blocked = asyncio.ensure_future(gate.run(release.wait, 30))
            while gate.pending == 0:
                await asyncio.sleep(0.001)
            with pytest.raises(BusyError):
                await gate.run(lambda: None)
            release.set()
            assert await blocked is True
            assert gate.pending == 0
            assert await gate.run(lambda x: x + 1, 1) == 2
        finally:
            release.set()
            gate.shutdown()

    asyncio.run(scenario())


def test_workers_run_requests_side_by_side():
    both_inside = threading.Barrier(2, timeout=30)

    async def scenario() -> list[int]:
        gate = InferenceGate(max_queue=8, workers=2)
        try:
            return await asyncio.gather(gate.run(both_inside.wait), gate.run(both_inside.wait))
        finally:
            gate.shutdown()

    assert sorted(asyncio.run(scenario())) == [0, 1]
