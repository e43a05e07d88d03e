"""Shared state for routes, as typed dependencies: a route's signature reads like its spec."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, UploadFile
from fastapi.security import APIKeyHeader

from lookalike.comparison import EmbeddingCache
from lookalike.config import Settings
from lookalike.embed import EmbedderPool
from lookalike.errors import ImageTooLargeError, UnauthorizedError
from lookalike.api.inference import InferenceGate


@dataclass
class AppState:
    """Everything loaded once at start-up (lifespan) and shared by all requests."""

    settings: Settings
    pool: EmbedderPool
    cache: EmbeddingCache
    gate: InferenceGate
    extras: dict = field(default_factory=dict)  # per-area state (catalog handles, feedback store, ...)


# The dependencies are ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency
# in its thread pool, a thread hop each per request (measured: ~2 ms of a search request's overhead
# on two busy cores), for what is an attribute read.


async def get_state(request: Request) -> AppState:
    return request.app.state.lookalike


async def get_settings_dep(state: Annotated[AppState, Depends(get_state)]) -> Settings:
    return state.settings


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_pool(state: StateDep) -> EmbedderPool:
    return state.pool


async def get_cache(state: StateDep) -> EmbeddingCache:
    return state.cache


async def get_gate(state: StateDep) -> InferenceGate:
    return state.gate


PoolDep = Annotated[EmbedderPool, Depends(get_pool)]
CacheDep = Annotated[EmbeddingCache, Depends(get_cache)]
GateDep = Annotated[InferenceGate, Depends(get_gate)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="required when the server sets api_key")


def _check_key(settings: Settings, supplied: str | None) -> None:
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    if supplied is None or not hmac.compare_digest(supplied.encode(), expected):
        raise UnauthorizedError("missing or wrong API key (send it in the X-API-Key header)")


async def require_api_key(settings: SettingsDep, key: Annotated[str | None, Depends(_api_key_header)]) -> None:
    """Write endpoints: the API key when one is configured (constant-time compare)."""
    _check_key(settings, key)


async def require_read_access(settings: SettingsDep, key: Annotated[str | None, Depends(_api_key_header)]) -> None:
    """Read endpoints: the API key only when ``protect_reads`` is on."""
    if settings.protect_reads:
        _check_key(settings, key)


WriteAccess = Depends(require_api_key)
ReadAccess = Depends(require_read_access)


async def read_upload(upload: UploadFile, settings: Settings, field_name: str) -> bytes:
    """An upload's bytes, refused as soon as it passes the size limit."""
    limit = settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:  # known from the multipart part: refuse unread
        raise ImageTooLargeError(f"{field_name} is {upload.size} bytes; the upload limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(1 << 20):
        total += len(chunk)
        if total > limit:
            raise ImageTooLargeError(f"{field_name} is larger than the upload limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_pair(
    image_1: UploadFile, image_2: UploadFile, settings: Settings, pool: EmbedderPool, gate: InferenceGate,
    model: str | None, input_size: int | None,
):  # noqa: ANN201 - (bytes, bytes, Embedder)
    """The two uploads of a compare request and the loaded embedder that will score them."""
    data_1 = await read_upload(image_1, settings, "image_1")
    data_2 = await read_upload(image_2, settings, "image_2")
    # a loaded model costs no thread hop; loading one runs in the pool (it can take seconds)
    embedder = pool.get_loaded(model, input_size) or await gate.run(pool.get, model, input_size)
    return data_1, data_2, embedder
