"""Starting a local Ray: retried when the raylet loses its 30 s start-up race, with logs on failure.

These use a stand-in for the ``ray`` module (the real start-up timeout cannot be provoked on
demand); the real start is exercised by every test in ``test_distributed.py``.
"""

from __future__ import annotations

import pytest

from lookalike.catalog import ray_indexer as distributed
from lookalike.errors import LookalikeError


class FlakyRay:
    """Fails ``init`` the first ``failures`` times like Ray's start-up timeout, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inits = 0
        self.shutdowns = 0
        self.up = False

    def is_initialized(self) -> bool:
        return self.up

    def init(self, **kwargs) -> None:
        self.inits += 1
        if self.inits <= self.failures:
            raise Exception("The current node timed out during startup.")
        self.up = True

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.up = False


@pytest.fixture(autouse=True)
def no_real_processes(monkeypatch):
    """The stand-in starts no processes, so none may be killed; record the clean-up calls instead."""
    cleanups: list[int] = []
    monkeypatch.setattr(distributed, "_kill_ray_children", lambda: cleanups.append(1) or 0)
    monkeypatch.setenv("RAY_DISABLE_USAGE_STATS", "1")  # ray_init sets it; keep the session's environment
    return cleanups


def test_stand_in_ray_start_is_retried_after_a_startup_timeout(monkeypatch, no_real_processes):
    fake = FlakyRay(failures=2)
    monkeypatch.setattr(distributed, "_import_ray", lambda: fake)
    assert distributed.ray_init(num_cpus=2, attempts=3, retry_pause_s=0) is True
    assert fake.inits == 3 and fake.shutdowns == 2 and fake.up
    assert len(no_real_processes) == 2  # each failed start's leftover processes were stopped


def test_stand_in_ray_configuration_error_is_not_retried(monkeypatch):
    class MisconfiguredRay(FlakyRay):
        def init(self, **kwargs) -> None:
            self.inits += 1
            raise ValueError("object_store_memory is larger than the available shared memory")

    fake = MisconfiguredRay(failures=0)
    monkeypatch.setattr(distributed, "_import_ray", lambda: fake)
    with pytest.raises(ValueError, match="object_store_memory"):
        distributed.ray_init(num_cpus=2, attempts=3, retry_pause_s=0)
    assert fake.inits == 1


def test_stand_in_ray_start_gives_a_clear_503_with_ray_logs_when_every_attempt_fails(monkeypatch, tmp_path):
    fake = FlakyRay(failures=5)
    monkeypatch.setattr(distributed, "_import_ray", lambda: fake)
    logs = tmp_path / "ray" / "session_latest" / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.err").write_text("first line\n[raylet] could not bind the object store socket\n")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(LookalikeError) as raised:
        distributed.ray_init(num_cpus=2, attempts=2, retry_pause_s=0)
    assert raised.value.status == 503 and raised.value.code == "ray_unavailable"
    assert "after 2 attempts" in raised.value.message and "could not bind the object store socket" in raised.value.message
    assert fake.inits == 2 and not fake.up


def test_stand_in_ray_already_running_is_left_alone(monkeypatch):
    fake = FlakyRay(failures=0)
    fake.up = True
    monkeypatch.setattr(distributed, "_import_ray", lambda: fake)
    assert distributed.ray_init(num_cpus=2) is False and fake.inits == 0
