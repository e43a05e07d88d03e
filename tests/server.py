"""Start a real ``lookalike serve`` on loopback for end-to-end tests (used by several test areas)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LOOKALIKE_CACHE_DIR=str(settings.cache_dir),
        LOOKALIKE_DATA_DIR=str(settings.data_dir),
        LOOKALIKE_WEIGHTS_DIRS=os.pathsep.join(str(p) for p in settings.weights_dirs),
        LOOKALIKE_ALLOW_HUB_DOWNLOAD="false",
        LOOKALIKE_CONFIG="none",  # no config file: only these settings
    )
    env.update(extra)
    return env


@contextmanager
def running_server(settings, *, timeout: float = 120.0, **env: str) -> Iterator[str]:
    """Yields the base URL of a live server; always stops it."""
    port = free_port()
    cmd = [sys.executable, "-m", "lookalike", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # a file, not a pipe: nobody drains a pipe while tests run, and a full pipe blocks the server's logging
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(cmd, env=server_env(settings, **env), stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited early:\n{log.read()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                raise TimeoutError(f"server did not answer /healthz in {timeout:.0f} s:\n{log.read()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
