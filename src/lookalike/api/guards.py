"""Guards in front of every route: body size while streaming, per-client rate, processing time.

These are plain ASGI middleware (not ``BaseHTTPMiddleware``) so the body is never buffered: an
oversized upload is refused from its ``Content-Length`` before one byte of it is read, or, when it
is sent chunked, as soon as the running count passes the limit. Every refusal is an ``ErrorBody``
(``api/errors.py``, the one home of the error contract).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from lookalike.api.errors import send_error
from lookalike.config import Settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Paths never throttled or timed out: liveness probes must answer even when the server is busy.
EXEMPT_PATHS = frozenset({"/healthz"})


def request_limit(settings: Settings) -> int:
    """The whole-body limit: explicit, or room for a few uploads plus multipart overhead."""
    return settings.max_request_bytes or 4 * settings.max_upload_bytes + (1 << 20)


class _Refused(Exception):
    """Raised into the app once we have answered for it; the app's own reply is then dropped."""


class BodyLimitMiddleware:
    """413 from ``Content-Length`` up front, or while counting a streamed (chunked) body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body is larger than the limit of {self.max_bytes} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await send_error(send, 400, "Content-Length is not a number", "bad_request")
                return
            if too_big:
                await send_error(send, 413, message, "request_too_large", {"Connection": "close"})
                return

        received = 0
        answered = False

        async def counting_receive() -> Message:
            nonlocal received, answered
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.max_bytes and not answered:
                    answered = True
                    await send_error(send, 413, message, "request_too_large", {"Connection": "close"})
                    raise _Refused()
            return event

        async def guarded_send(event: Message) -> None:
            if not answered:
                await send(event)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _Refused:
            pass
        except Exception:
            if not answered:
                raise


class RateLimitMiddleware:
    """A token bucket per client address: 429 + Retry-After.

    Keyed by the peer address only: a header the client chooses (an API key it made up) would let
    it open a fresh bucket per request. Behind a reverse proxy, run uvicorn with
    ``--proxy-headers`` so the peer is the real client.
    """

    def __init__(self, app: ASGIApp, per_minute: int, max_clients: int = 10_000) -> None:
        self.app = app
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, stamp)
        self._lock = threading.Lock()

    def _take(self, client: str) -> float:
        """0 when allowed, else seconds until the next token."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:  # forget the least recently seen
                self._buckets.popitem(last=False)
            return wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self._take(str((scope.get("client") or ("?", 0))[0]))
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            await send_error(send, 429, f"rate limit of {int(self.capacity)} requests per minute exceeded; "
                             f"retry in {retry} s", "rate_limited", {"Retry-After": retry})
            return
        await self.app(scope, receive, send)


class TimeoutMiddleware:
    """504 when a request has not started its response within ``request_timeout_s``.

    The route runs as its own task so the answer does not wait for it: a sync route's thread (or
    work handed to the inference thread) cannot be interrupted, only abandoned. It finishes in the
    background and whatever it tries to send is dropped; the caller is told at once.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()
        abandoned = False

        async def guarded_send(event: Message) -> None:
            if abandoned:
                return
            if event["type"] == "http.response.start":
                started.set()
            await send(event)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({task, waiter}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is shutting down or the client went away
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if task.done() or started.is_set():
            await task  # answered (or answering): let it finish, errors propagate as usual
            return
        abandoned = True
        task.cancel()
        task.add_done_callback(_drain)
        await send_error(send, 504, f"request took longer than {self.seconds:g} s and was abandoned", "timeout")


def _drain(task: asyncio.Future) -> None:
    """Retrieve an abandoned request's outcome so it is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()


class SecurityHeadersMiddleware:
    """``nosniff`` everywhere: a stored upload is never reinterpreted by a browser as HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(event: Message) -> None:
            if event["type"] == "http.response.start":
                headers = list(event.get("headers", []))
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                event = dict(event, headers=headers)
            await send(event)

        await self.app(scope, receive, with_headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def install(app, settings: Settings) -> None:  # noqa: ANN001 - a FastAPI app
    """Register the guards; the last added runs first (headers, rate limit, size, then timeout)."""
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_s)
    app.add_middleware(BodyLimitMiddleware, max_bytes=request_limit(settings))
    if settings.rate_limit_per_minute:
        app.add_middleware(RateLimitMiddleware, per_minute=settings.rate_limit_per_minute)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: the guards' own refusals carry it too


# the multipart file fields of the API (compare: image_1/image_2, search: image, catalog uploads: files)
