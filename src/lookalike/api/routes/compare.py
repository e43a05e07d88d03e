"""``POST /v1/compare``: the versioned comparison with tiers, thresholds and a timing breakdown."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, UploadFile

from lookalike.comparison import compare_with, copy_detector
from lookalike.errors import LookalikeError
from lookalike.similarity import thresholds_for
from lookalike.api.deps import CacheDep, GateDep, PoolDep, ReadAccess, SettingsDep, read_pair
from lookalike.api.schemas import CompareResult, ThresholdSet, Timing

router = APIRouter(prefix="/v1", tags=["compare"])


@router.post("/compare", response_model=CompareResult, dependencies=[ReadAccess])
async def compare_images(
    image_1: UploadFile,
    image_2: UploadFile,
    settings: SettingsDep,
    pool: PoolDep,
    gate: GateDep,
    cache: CacheDep,
    model: Annotated[str | None, Query(description="model name or alias; default: the configured model")] = None,
    input_size: Annotated[int | None, Query(description="input side in pixels; default: the model's own")] = None,
    model_name: Annotated[str | None, Query(description="the seed endpoint's name for `model` (an alias)")] = None,
) -> CompareResult:
    started = time.perf_counter()
    if model and model_name and model != model_name:
        raise LookalikeError(f"model={model!r} and model_name={model_name!r} disagree; send one of them",
                             status=422, code="conflicting_parameters")
    model = model or model_name  # the seed's parameter name: a caller moving from the seed keeps its choice
    data_1, data_2, embedder = await read_pair(image_1, image_2, settings, pool, gate, model, input_size)
    thresholds = thresholds_for(embedder.model_name, embedder.input_size, settings)

    def compare():  # noqa: ANN202 - in the inference lane: the copy detector's first use loads it there
        return compare_with(embedder, data_1, data_2, thresholds, cache, geometry=settings.geometric_check,
                            copy=copy_detector(pool.get, settings))

    result = await gate.run(compare)
    total = (time.perf_counter() - started) * 1000.0
    inside = result.timing_ms  # decode + embed + geometry = its total; the rest of the request is waiting
    timing = {"decode": inside["decode"], "embed": inside["embed"], "geometry": inside["geometry"],
              "wait": max(0.0, total - inside["decode"] - inside["embed"] - inside["geometry"]), "total": total}
    return CompareResult(
        model=result.model,
        input_size=result.input_size,
        cosine=result.cosine,
        score=result.score,
        threshold=thresholds.match,
        threshold_source=thresholds.source,
        thresholds=ThresholdSet(match=thresholds.match, near_duplicate=thresholds.near_duplicate,
                                similar=thresholds.similar),
        verdict=result.tier.value,
        is_match=result.is_match,
        timing_ms=Timing(**timing),
        copy_model=result.copy_model,
        copy_score=result.copy_score,
    )
