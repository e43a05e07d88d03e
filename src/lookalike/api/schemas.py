"""Response models: the OpenAPI schema is the contract (the seed's JSON keys are pinned here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VerdictName = Literal["exact", "near_duplicate", "similar", "different"]


class SeedSimilarity(BaseModel):
    """The seed endpoint's answer, key for key."""

    model_config = ConfigDict(populate_by_name=True)

    similarity_score: float = Field(alias="Similarity Score", description="(cosine + 1) / 2")
    are_similar: Literal["Yes", "No"] = Field(alias="Are the images similar?")
    time_ms: float = Field(alias="Time taken in milliseconds")


class ThresholdSet(BaseModel):
    match: float
    near_duplicate: float
    similar: float


class Timing(BaseModel):
    decode: float = Field(description="ms: hashing, decoding, resizing and normalizing both images")
    embed: float = Field(description="ms: the forward pass")
    geometry: float = Field(0.0, description="ms: deciding the tier (exact pixels, the geometric check)")
    wait: float = Field(0.0, description="ms: reading the uploads, loading the model, waiting for the inference lane")
    total: float = Field(description="ms: the whole request inside the server (= decode + embed + geometry + wait)")


class CompareResult(BaseModel):
    model: str
    input_size: int
    cosine: float = Field(description="raw cosine of the two L2-normalized embeddings, in [-1, 1]")
    score: float = Field(description="(cosine + 1) / 2, in [0, 1]")
    threshold: float = Field(description="score at or above which the images are the same thing")
    threshold_source: str
    thresholds: ThresholdSet
    verdict: VerdictName
    is_match: bool
    timing_ms: Timing
    copy_model: str | None = Field(None, description="the copy detector that decided exact/near_duplicate "
                                   "(setting copy_model); null: the score and the geometric check decided")
    copy_score: float | None = Field(None, description="the copy detector's (cosine + 1) / 2; with a copy "
                                     "detector, is_match means verdict exact or near_duplicate")


class ModelInfo(BaseModel):
    name: str
    aliases: list[str]
    dim: int
    default_input_size: int
    weights_available: bool
    weights_source: str
    description: str
    loaded: bool


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    default_model: str
    loaded_models: list[str]
    queue: int


class ErrorBody(BaseModel):
    detail: str
    code: str
