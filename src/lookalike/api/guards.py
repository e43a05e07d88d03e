"""Guards in front of every route: body size while streaming, per-client rate, processing time.

These are plain ASGI middleware (not ``BaseHTTPMiddleware``) so the body is never buffered: an
oversized upload is refused from its ``Content-Length`` before one byte of it is read, or, when it
is sent chunked, as soon as the running count passes the limit. Every refusal uses the API's error
shape ``{"detail", "code"}`` so clients handle one format; ``install`` also puts framework errors
(bad multipart, unknown path) and storage failures (full disk: 507, read-only: 503) in that shape,
and documents all of them in the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Awaitable, Callable

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


async def send_error(send: Send, status: int, detail: str, code: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail, "code": code}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


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


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}


def _install_http_error_shape(app) -> None:  # noqa: ANN001 - a FastAPI app
    """Framework errors (bad multipart, unknown path, wrong method) in the API's one error shape."""
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def _http_error(_, exc: HTTPException) -> JSONResponse:  # noqa: ANN001
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse({"detail": str(exc.detail), "code": code}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))


# Refusals any operation may answer with (guards, bad input, auth, backpressure), all ErrorBody.
ERROR_RESPONSES = {
    "400": "malformed request (e.g. broken multipart body)",
    "401": "missing or wrong API key",
    "404": "unknown model, catalog or image",
    "413": "upload or request body over the configured limits",
    "422": "invalid parameters, or an upload that is not a usable image",
    "429": "per-client rate limit exceeded (see Retry-After)",
    "503": "inference queue full (see Retry-After), weights unavailable, or storage read-only",
    "504": "processing took longer than request_timeout_s",
    "507": "catalog storage full",
}
_ERROR_BODY = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["detail", "code"],
    "properties": {"detail": {"type": "string", "title": "Detail"}, "code": {"type": "string", "title": "Code"}},
}


def _document_errors(app) -> None:  # noqa: ANN001 - a FastAPI app
    """Make the OpenAPI schema tell the truth about errors: one ``ErrorBody`` shape, every status.

    FastAPI documents 422 as its own validation-error list, but the API answers ``{"detail",
    "code"}``; clients generated from the schema (and schemathesis) must see what is really sent.
    """
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = _ERROR_BODY
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_RESPONSES.items():
                    if status not in responses or status == "422":
                        responses[status] = {"description": description, "content": body}
        text = str(schema.get("paths"))
        for unused in ("HTTPValidationError", "ValidationError"):
            if f"/{unused}'" not in text:
                components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(exc: BaseException) -> tuple[int, str, str] | None:
    """(status, code, message) for a failed write to the data dir, or None if it is not one.

    A full disk or a read-only catalog folder is an operator's problem, not a bug: the caller gets
    a clear 507/503 instead of "internal error", and SQLite's transaction keeps the catalog intact.
    """
    text = str(exc).lower()
    number = getattr(exc, "errno", None)
    if number in _FULL or any(t in text for t in ("disk is full", "file too large", "no space left")):
        return 507, "storage_full", "the catalog storage is full; the request was not completed (free space and retry)"
    if number in _READ_ONLY or "readonly" in text or "read-only" in text:  # FAISS: "Read-only file system"
        return 503, "storage_read_only", "the catalog storage is read-only; the request was not completed"
    if "disk i/o error" in text or "unable to open database" in text:
        return 503, "storage_error", f"the catalog storage failed ({exc}); the request was not completed"
    return None


def _install_storage_errors(app) -> None:  # noqa: ANN001 - a FastAPI app
    import logging
    import sqlite3

    from fastapi.responses import JSONResponse

    log = logging.getLogger("lookalike.api")

    async def _storage(_, exc: Exception) -> JSONResponse:  # noqa: ANN001
        known = storage_error(exc)
        if known is None:
            log.error("unexpected error", exc_info=exc)
            return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server log",
                                 "code": "internal"}, status_code=500)
        status, code, message = known
        log.warning("storage error: %s", exc)
        return JSONResponse({"detail": message, "code": code}, status_code=status,
                            headers={"Retry-After": "60"} if status == 503 else None)

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(sqlite3.Error, _storage)
    app.add_exception_handler(RuntimeError, _storage)  # FAISS reports write errors as RuntimeError


def install(app, settings: Settings) -> None:  # noqa: ANN001 - a FastAPI app
    """Register the guards; the last added runs first (headers, rate limit, size, then timeout)."""
    _install_http_error_shape(app)
    _install_storage_errors(app)
    _document_errors(app)
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout_s)
    app.add_middleware(BodyLimitMiddleware, max_bytes=request_limit(settings))
    if settings.rate_limit_per_minute:
        app.add_middleware(RateLimitMiddleware, per_minute=settings.rate_limit_per_minute)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: the guards' own refusals carry it too


# the multipart file fields of the API (compare: image_1/image_2, search: image, catalog uploads: files)
UPLOAD_FIELDS = frozenset({"image", "image_1", "image_2", "files", "file"})


def describe_validation_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """FastAPI's request-validation errors as one sentence per problem that names the field and the fix.

    ``-F image_1=hello`` (text where a file belongs) reads "image_1 must be a file upload (multipart,
    e.g. curl -F image_1=@a.jpg)", not pydantic's "Expected UploadFile, received: <class 'str'>"."""
    problems = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where, names = (loc[0], loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else ("", loc)
        field = ".".join(names)
        name = names[0] if names else ""
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if name in UPLOAD_FIELDS and where == "body" and (
                "UploadFile" in message or err.get("type") == "missing"):
            what = "is required" if err.get("type") == "missing" else "must be a file upload"
            problems.append(f"{field} {what} (multipart, e.g. curl -F {name}=@a.jpg)")
        elif where == "query":
            problems.append(f"query parameter {field}: {message}")
        else:
            problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems) or "invalid request"
