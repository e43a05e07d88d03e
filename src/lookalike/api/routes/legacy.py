"""The seed's endpoint, kept exactly: same path, fields and JSON keys; Yes/No at the config threshold."""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, UploadFile

from lookalike.comparison import compare_with
from lookalike.similarity import Thresholds, seed_threshold
from lookalike.api.deps import CacheDep, GateDep, PoolDep, ReadAccess, SettingsDep, read_pair
from lookalike.api.schemas import SeedSimilarity

router = APIRouter(tags=["seed"])


@router.post("/cosine_similarity_score", response_model=SeedSimilarity, response_model_by_alias=True,
             dependencies=[ReadAccess])
async def cosine_similarity_score(
    image_1: UploadFile,
    image_2: UploadFile,
    settings: SettingsDep,
    pool: PoolDep,
    gate: GateDep,
    cache: CacheDep,
    model_name: Annotated[str | None, Query(description="model or seed alias; default: the configured model")] = None,
    input_size: Annotated[int | None, Query(description="224, 416 or 512; default: the model's own")] = None,
) -> SeedSimilarity:
    started = time.perf_counter()
    data_1, data_2, embedder = await read_pair(image_1, image_2, settings, pool, gate, model_name, input_size)
    threshold = seed_threshold(embedder.model_name, settings)
    line = Thresholds(threshold, threshold, threshold, "seed threshold")
    # The seed's Yes/No is the score against one line: the tier's geometric check is not needed.
    result = await gate.run(partial(compare_with, geometry=False), embedder, data_1, data_2, line, cache)
    return SeedSimilarity(
        similarity_score=result.score,
        are_similar="Yes" if result.score >= threshold else "No",
        time_ms=(time.perf_counter() - started) * 1000.0,
    )
