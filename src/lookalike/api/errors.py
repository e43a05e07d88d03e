"""The API's one error contract: every refusal is ``ErrorBody`` (``{"detail", "code"}``) JSON.

One builder (``error_body``) serves the exception handlers (``install``) and the raw ASGI guards
(``send_error``), so a client parses one shape whatever refused it: a ``LookalikeError`` from the
library (its own status and code), FastAPI's validation errors, Starlette's HTTP errors (bad
multipart, unknown path, wrong method), storage failures (full disk 507, read-only 503) and the
last-resort 500. ``document`` makes the OpenAPI schema say so, from the ``ErrorBody`` model itself.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
from typing import Any, Awaitable, Callable, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lookalike.api.schemas import ErrorBody
from lookalike.errors import BusyError, LookalikeError

log = logging.getLogger("lookalike.api")

Send = Callable[[dict[str, Any]], Awaitable[None]]


def error_body(detail: str, code: str) -> dict[str, str]:
    """The one error shape (``ErrorBody``)."""
    return ErrorBody(detail=detail, code=code).model_dump()


def error_response(status: int, detail: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(detail, code), status_code=status, headers=headers)


async def send_error(send: Send, status: int, detail: str, code: str, headers: dict[str, str] | None = None) -> None:
    """The same body from plain ASGI middleware (which answers before any route runs)."""
    body = json.dumps(error_body(detail, code)).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


# --- storage failures ------------------------------------------------------------------------------
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


# --- handlers ----------------------------------------------------------------------------------------
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}


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


def install(app: FastAPI) -> None:
    """Register every handler that turns an exception into ``ErrorBody`` JSON."""

    @app.exception_handler(LookalikeError)
    async def _lookalike_error(_: Request, exc: LookalikeError) -> JSONResponse:
        headers = {"Retry-After": "1"} if isinstance(exc, BusyError) else None
        return error_response(exc.status, exc.message, exc.code, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, describe_validation_errors(exc.errors()), "invalid_request")

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, str(exc.detail), code, getattr(exc, "headers", None))

    async def _storage(_: Request, exc: Exception) -> JSONResponse:
        known = storage_error(exc)
        if known is None:
            log.error("unexpected error", exc_info=exc)
            return error_response(500, f"internal error ({type(exc).__name__}); see the server log", "internal")
        status, code, message = known
        log.warning("storage error: %s", exc)
        return error_response(status, message, code, {"Retry-After": "60"} if status == 503 else None)

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(sqlite3.Error, _storage)
    app.add_exception_handler(RuntimeError, _storage)  # FAISS reports write errors as RuntimeError

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - last resort
        log.exception("unexpected error")
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log", "internal")

    document(app)


# --- OpenAPI -----------------------------------------------------------------------------------------
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


def document(app: FastAPI) -> None:
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
        components["ErrorBody"] = ErrorBody.model_json_schema()
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
