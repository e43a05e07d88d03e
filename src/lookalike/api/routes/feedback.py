"""``POST /v1/feedback`` (two uploads or two catalog ids + same/different) and ``GET /v1/feedback``."""

from __future__ import annotations

import json
from functools import partial
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from lookalike.errors import InvalidValueError, UnsupportedMediaError
from lookalike.quality.feedback import FeedbackStore, add_catalog_pair, check_label, feedback_root
from lookalike.imaging import ImageLimits
from lookalike.api.deps import ReadAccess, StateDep, WriteAccess, read_upload

router = APIRouter(prefix="/v1", tags=["feedback"])


class FeedbackByIds(BaseModel):
    catalog: str = Field(description="catalog holding both images")
    id_a: int
    id_b: int
    label: Literal["same", "different"]


class FeedbackStored(BaseModel):
    id: int
    label: Literal["same", "different"]
    stored: bool = True


class FeedbackItem(BaseModel):
    id: int
    created_at: float
    label: str
    hash_a: str
    hash_b: str
    catalog: str | None
    id_a: int | None
    id_b: int | None
    filename_a: str | None
    filename_b: str | None


def _store(state) -> FeedbackStore:
    store = state.extras.get("feedback")
    if store is None:
        store = state.extras["feedback"] = FeedbackStore(feedback_root(state.settings),
                                                         ImageLimits.from_settings(state.settings))
    return store


_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": FeedbackByIds.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image_1", "image_2", "label"],
                    "properties": {
                        "image_1": {"type": "string", "format": "binary"},
                        "image_2": {"type": "string", "format": "binary"},
                        "label": {"type": "string", "enum": ["same", "different"]},
                    },
                }
            },
        },
    }
}


@router.post("/feedback", response_model=FeedbackStored, dependencies=[WriteAccess], openapi_extra=_BODY_DOC)
async def post_feedback(request: Request, state: StateDep) -> FeedbackStored:
    """Label a pair: JSON ``{catalog, id_a, id_b, label}`` or multipart ``image_1``, ``image_2``, ``label``."""
    content_type = request.headers.get("content-type", "")
    store = _store(state)
    if content_type.startswith("application/json"):
        try:
            body = FeedbackByIds.model_validate(json.loads(await request.body() or b"null"))
        except (ValidationError, ValueError) as exc:
            raise InvalidValueError(f"expected JSON {{catalog, id_a, id_b, label: same|different}}: {exc}",
                                    code="bad_feedback") from None
        record = await state.gate.run(add_catalog_pair, store, state.settings, body.catalog, body.id_a, body.id_b,
                                      body.label)
    elif content_type.startswith("multipart/form-data"):
        form = await request.form()
        image_1, image_2, label = form.get("image_1"), form.get("image_2"), form.get("label")
        if not isinstance(image_1, UploadFile) or not isinstance(image_2, UploadFile):
            raise InvalidValueError("multipart feedback needs two files, image_1 and image_2", code="bad_feedback")
        check_label(str(label) if label is not None else "")
        data_1 = await read_upload(image_1, state.settings, "image_1")
        data_2 = await read_upload(image_2, state.settings, "image_2")
        add = partial(store.add, filename_a=image_1.filename, filename_b=image_2.filename)
        record = await state.gate.run(add, data_1, data_2, str(label))
    else:
        raise UnsupportedMediaError("send JSON {catalog, id_a, id_b, label} or multipart image_1, image_2, label")
    return FeedbackStored(id=record.id, label=record.label)


@router.get("/feedback", response_model=list[FeedbackItem], dependencies=[ReadAccess])
def list_feedback(state: StateDep) -> list[FeedbackItem]:
    return [FeedbackItem(**r.to_dict()) for r in _store(state).list()]
