"""Catalog routes: add uploads, search by image or id, near-duplicate clusters, files by id.

Thin adapters over ``lookalike.catalog``: catalogs are opened once per process and kept in the app
state (closed at shutdown); CPU work goes through the inference gate. Files are served only by
id, from the path the catalog recorded, never from a path the client names.
"""

from __future__ import annotations

import asyncio
import mimetypes
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Path as PathParam, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from lookalike.catalog.catalog import Catalog, list_catalogs
from lookalike.catalog.dedup import find_duplicates
from lookalike.catalog.ingest import add_uploads
from lookalike.catalog.media import thumbnail as make_thumbnail
from lookalike.catalog.search import search_id, search_image
from lookalike.config import Settings
from lookalike.errors import LookalikeError
from lookalike.api.deps import GateDep, PoolDep, ReadAccess, SettingsDep, StateDep, WriteAccess, read_upload
from lookalike.api.schemas import VerdictName

router = APIRouter(prefix="/v1/catalogs", tags=["catalogs"])
# ids are SQLite rowids: bounded here so a huge number is a 422, not an overflow deep in SQLite
MAX_ID = 2**63 - 1
ImageId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="image id")]


class CatalogHandles:
    """Open catalogs of this process, by name (one ``Catalog`` object each, shared by requests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._open: dict[str, Catalog] = {}
        self._lock = threading.Lock()

    def get(self, name: str, *, create: bool = False) -> Catalog:
        with self._lock:
            catalog = self._open.get(name)
            if catalog is None:
                catalog = self._open[name] = Catalog(name, self.settings, create=create)
        catalog.refresh()
        return catalog

    def close(self) -> None:
        with self._lock:
            for catalog in self._open.values():
                catalog.close()
            self._open.clear()


async def get_handles(state: StateDep) -> CatalogHandles:
    handles = state.extras.get("catalogs")
    if handles is None:
        handles = state.extras.setdefault("catalogs", CatalogHandles(state.settings))
    return handles


HandlesDep = Annotated[CatalogHandles, Depends(get_handles)]


# --- schemas ---------------------------------------------------------------------------------
class CatalogInfo(BaseModel):
    name: str
    count: int
    model: str
    input_size: int
    created_at: float


class AddedImage(BaseModel):
    id: int
    filename: str
    content_hash: str
    status: Literal["added", "exists"]


class UploadError(BaseModel):
    filename: str
    error: str


class AddResult(BaseModel):
    added: list[AddedImage]
    errors: list[UploadError]


class ImageInfo(BaseModel):
    id: int
    path: str | None
    filename: str
    content_hash: str
    width: int
    height: int
    bytes: int
    added_at: float


class Deleted(BaseModel):
    id: int
    deleted: bool


class QueryInfo(BaseModel):
    id: int | None
    filename: str | None


class SearchHit(BaseModel):
    id: int
    path: str | None
    filename: str
    cosine: float
    score: float
    verdict: VerdictName
    rank_score: float = Field(description="the key results are ordered by (see the response's `order`): the "
                              "cosine, plus min(inliers, 40) / 40 where the hit was verified (geometry.rerank_key)")
    inliers: int | None = Field(None, description="local-feature matches that fit one similarity transform "
                                "with the query; null: not verified")
    verified: bool = Field(False, description="local features were matched against the query for this hit")


class SearchResponse(BaseModel):
    query: QueryInfo
    model: str
    input_size: int
    order: Literal["cosine", "rank_score"] = Field(
        description="`rank_score`: the top `reranked` hits by cosine were re-ordered by cosine + local evidence, "
        "so a hit can follow one with a higher `score`; `cosine`: embedding order")
    reranked: int = Field(description="how many top hits by cosine the re-rank considered (0: none)")
    results: list[SearchHit]


class Member(BaseModel):
    id: int
    path: str | None
    filename: str
    width: int
    height: int


class DuplicatePair(BaseModel):
    a: int
    b: int
    cosine: float
    score: float
    verdict: VerdictName
    checked: bool = False  # decided by the local-feature check


class DuplicateCluster(BaseModel):
    cluster_id: int
    tier: Literal["exact", "near_duplicate"]
    keep: int
    centre: int = 0  # every other member is a verified copy of this one
    members: list[Member]
    pairs: list[DuplicatePair]


class DuplicatesResponse(BaseModel):
    threshold: float
    clusters: list[DuplicateCluster]
    stats: dict = {}


class DuplicatesRunning(BaseModel):
    status: Literal["running"]
    stage: str
    done: int
    total: int
    elapsed_s: float


# --- routes ----------------------------------------------------------------------------------
@router.get("", response_model=list[CatalogInfo], dependencies=[ReadAccess])
def catalogs(settings: SettingsDep) -> list[dict]:
    return list_catalogs(settings)


@router.post("/{name}/images", response_model=AddResult, dependencies=[WriteAccess])
async def add_images(
    name: str,
    files: Annotated[list[UploadFile], File(description="one or more images")],
    settings: SettingsDep,
    handles: HandlesDep,
    pool: PoolDep,
    gate: GateDep,
) -> dict:
    uploads = [(f.filename or "upload", await read_upload(f, settings, f.filename or "files")) for f in files]
    catalog = await gate.run(lambda: handles.get(name, create=True))
    added, errors = await gate.run(add_uploads, catalog, uploads, pool)
    return {"added": added, "errors": errors}


@router.get("/{name}/images/{image_id}", response_model=ImageInfo, dependencies=[ReadAccess])
def image_info(name: str, image_id: ImageId, handles: HandlesDep) -> dict:
    return handles.get(name).get(image_id).to_dict()


@router.get("/{name}/images/{image_id}/thumbnail", response_class=FileResponse, dependencies=[ReadAccess],
            responses={200: {"content": {"image/jpeg": {}}}})
def thumbnail(name: str, image_id: ImageId, handles: HandlesDep,
              size: Annotated[int, Query(ge=16, le=1024, description="long side in pixels")] = 256) -> FileResponse:
    path = make_thumbnail(handles.get(name), image_id, size)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/{name}/images/{image_id}/file", response_class=FileResponse, dependencies=[ReadAccess])
def original_file(name: str, image_id: ImageId, handles: HandlesDep) -> FileResponse:
    catalog = handles.get(name)
    record = catalog.get(image_id)
    path = catalog.original_path(record)
    media = mimetypes.guess_type(record.filename)[0] or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, filename=Path(record.filename).name)


@router.delete("/{name}/images/{image_id}", response_model=Deleted, dependencies=[WriteAccess])
def delete_image(name: str, image_id: ImageId, handles: HandlesDep) -> dict:
    catalog = handles.get(name)
    catalog.get(image_id)  # 404 when unknown
    catalog.remove([image_id])
    return {"id": image_id, "deleted": True}


def _opened(catalog: Catalog, work):  # noqa: ANN001, ANN202
    """``(catalog, work(catalog))``: opening the catalog and searching it in one trip to the inference lane."""
    return catalog, work(catalog)


@router.post("/{name}/search", response_model=SearchResponse, dependencies=[ReadAccess])
async def search(
    name: str,
    settings: SettingsDep,
    handles: HandlesDep,
    pool: PoolDep,
    gate: GateDep,
    image: Annotated[UploadFile | None, File(description="query image (or give `id`)")] = None,
    id: Annotated[int | None, Form(ge=1, le=MAX_ID, description="id of an image already in the catalog")] = None,  # noqa: A002
    k: Annotated[int | None, Query(ge=1, le=1000, description="how many results (default 10)")] = None,
    k_form: Annotated[int | None, Form(alias="k", ge=1, le=1000)] = None,
) -> dict:
    """The catalog images closest to the query, best first (``lookalike.catalog.search``).

    Order (`order` in the response): the top `search_rerank_top` (default 50) hits by cosine are
    re-ranked by `rank_score` = cosine + min(inliers, 40) / 40, the local-feature evidence that
    lifts other shots of the same object; so a result can follow one with a higher `score`, and
    its `inliers` say why. Verdicts of the first ten use the geometric check (another shot reads
    `similar`, an edited copy `near_duplicate`).
    """
    if (image is None) == (id is None):
        raise LookalikeError("send exactly one of: an `image` file, or the `id` of a catalog image",
                             status=422, code="bad_query")
    count = k or k_form or 10
    if id is not None:
        catalog, answer = await gate.run(lambda: _opened(handles.get(name), lambda c: search_id(c, id, count, pool=pool)))
        query = {"id": id, "filename": catalog.get(id).filename}
    else:
        data = await read_upload(image, settings, "image")
        catalog, answer = await gate.run(lambda: _opened(handles.get(name),
                                                         lambda c: search_image(c, data, count, pool=pool)))
        query = {"id": None, "filename": image.filename}
    return {"query": query, "model": catalog.model, "input_size": catalog.input_size} | answer.to_dict()


class DuplicateJobs:
    """Dedup runs in a background thread per (catalog, threshold, catalog version), so a large
    catalog's request never hits the request timeout: the route waits a while for the job, then
    answers 202 with its progress; the same request later returns the finished report (kept until
    the catalog changes)."""

    def __init__(self) -> None:
        self._jobs: dict[tuple, dict] = {}
        self._lock = threading.Lock()

    def start(self, catalog: Catalog, threshold: float | None) -> dict:
        key = (catalog.name, threshold, catalog.meta.data_version(), len(catalog))
        with self._lock:
            for old in [k for k in self._jobs if k[0] == catalog.name and k != key and self._jobs[k]["done"].is_set()]:
                del self._jobs[old]  # a report of an older version of the catalog
            job = self._jobs.get(key)
            if job is not None:
                return job
            job = self._jobs[key] = {"done": threading.Event(), "report": None, "error": None,
                                     "stage": "graph", "progress": (0, len(catalog)), "started": time.monotonic()}

        def progress(stage: str, done: int, total: int) -> None:
            job["stage"], job["progress"] = stage, (done, total)

        def run() -> None:
            try:
                job["report"] = find_duplicates(catalog, threshold, progress=progress).to_dict()
            except Exception as exc:  # noqa: BLE001 - handed to the request that asks next
                job["error"] = exc
                with self._lock:
                    self._jobs.pop(key, None)  # the next request starts afresh
            finally:
                job["done"].set()

        threading.Thread(target=run, name=f"dedup-{catalog.name}", daemon=True).start()
        return job


def get_jobs(state: StateDep) -> DuplicateJobs:
    jobs = state.extras.get("duplicate_jobs")
    if jobs is None:
        jobs = state.extras.setdefault("duplicate_jobs", DuplicateJobs())
    return jobs


@router.get("/{name}/duplicates", response_model=DuplicatesResponse, dependencies=[ReadAccess],
            responses={202: {"model": DuplicatesRunning, "description": "still running: ask again (Retry-After)"}})
async def duplicates(
    name: str,
    handles: HandlesDep,
    gate: GateDep,
    state: StateDep,
    settings: SettingsDep,
    threshold: Annotated[float | None, Query(ge=0.0, le=1.0, description="candidate line as a score (cos+1)/2; "
                                             "default: the model's")] = None,
    wait: Annotated[float | None, Query(ge=0.0, le=600.0, description="seconds to wait for the result before "
                                        "answering 202 with progress; default: half the request timeout")] = None,
):
    catalog = await gate.run(lambda: handles.get(name))
    job = get_jobs(state).start(catalog, threshold)
    limit = settings.request_timeout_s / 2 if wait is None else min(wait, settings.request_timeout_s * 0.8)
    await asyncio.get_running_loop().run_in_executor(None, job["done"].wait, limit)
    if job["done"].is_set():
        if job["error"] is not None:
            raise job["error"]
        return job["report"]
    done, total = job["progress"]
    body = {"status": "running", "stage": job["stage"], "done": done, "total": total,
            "elapsed_s": round(time.monotonic() - job["started"], 1)}
    return JSONResponse(body, status_code=202, headers={"Retry-After": "2"})
