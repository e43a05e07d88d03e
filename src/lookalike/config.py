"""Configuration: one typed ``Settings`` read once, then passed down.

Sources, highest priority first: explicit keyword arguments, ``LOOKALIKE_*`` environment variables,
a TOML file (``LOOKALIKE_CONFIG``, else ``./lookalike.toml``, else the user config dir), defaults.
Nothing else in the package reads environment variables: code receives a ``Settings``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP_NAME = "lookalike"
ENV_PREFIX = "LOOKALIKE_"


def default_config_file() -> Path:
    """Where the TOML config is looked for when ``LOOKALIKE_CONFIG`` is not set."""
    local = Path("lookalike.toml")
    if local.is_file():
        return local
    return Path(platformdirs.user_config_dir(APP_NAME)) / "lookalike.toml"


def config_file_path() -> Path:
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    return Path(explicit) if explicit else default_config_file()


Backend = Literal["auto", "onnxruntime", "openvino", "torch"]
Preprocess = Literal["resize", "crop"]
Pooling = Literal["avg", "gem", "max"]


class Settings(BaseSettings):
    """Every knob of lookalike, with the seed's defaults where the seed had one."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_nested_delimiter="__")

    # --- models -------------------------------------------------------------------------------
    default_model: str = Field("tf_efficientnet_lite0", description="model used when none is named")
    input_size: int | None = Field(None, description="input side in pixels; None = the model's own")
    allowed_input_sizes: list[int] = Field([224, 240, 260, 416, 512], description="sizes a caller may pick")
    preprocess: Preprocess | None = Field(
        None, description="'resize' the whole image or timm's centre 'crop'; None = the model's default"
    )
    pooling: Pooling = Field(
        "gem", description="feature-map pooling: GeM beat average on every model (benchmarks/results/accuracy.md)"
    )
    enabled_models: list[str] | None = Field(None, description="models the service offers; None = all")
    backend: Backend = Field(
        "auto", description="inference engine; 'auto' = OpenVINO when installed (fastest here), else ONNX Runtime"
    )
    threads: int | None = Field(None, description="inference threads; None = all cores")
    openvino_hint: Literal["latency", "throughput"] = Field(
        "latency", description="OpenVINO: one stream over all cores, forwards one at a time (latency), or one "
        "single-thread stream per core with a batch split across them (throughput); benchmarks/results/serving.md"
    )
    model_cache_size: int = Field(3, ge=1, description="loaded (model, size) pairs kept in memory (LRU)")

    # --- weights ------------------------------------------------------------------------------
    weights_files: dict[str, Path] = Field({}, description="explicit weights file per model name")
    weights_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path(platformdirs.user_cache_dir(APP_NAME)) / "weights"],
        description="folders searched for weights files named in the model table (env: os.pathsep-separated)",
    )
    allow_hub_download: bool = Field(True, description="let timm fetch weights from the hub when online")
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)),
        description="exported ONNX models and thumbnails",
    )

    # --- verdicts -----------------------------------------------------------------------------
    threshold: float = Field(0.80, ge=0.0, le=1.0, description="seed threshold on (cos+1)/2")
    model_thresholds: dict[str, float] = Field({}, description="per-model override of `threshold`")
    calibration_file: Path | None = Field(None, description="calibrated thresholds; None = shipped defaults")
    geometric_check: bool = Field(
        True, description="ORB+RANSAC check tells an edited copy (near_duplicate) from another shot (similar)"
    )

    # --- catalogs -----------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)), description="catalogs live here"
    )
    catalog_flat_max: int = Field(20_000, ge=0, description="exact 'Flat' index up to this many images")
    catalog_index_factory: str = Field(
        "PCA96,HNSW32", description="faiss.index_factory string above catalog_flat_max: a compressed index "
        "whose top candidates are re-ranked exactly (benchmarks/results/catalog.md)"
    )
    catalog_search_params: str = Field(
        "nprobe=64,efSearch=352,efConstruction=160", description="FAISS search (and HNSW build) parameters"
    )
    catalog_refine: int = Field(
        64, ge=0, le=1024, description="above the flat index, re-rank this many candidates with the full vectors "
        "(vectors.f32 beside the index); 0 = the index's own scores"
    )
    search_rerank_top: int = Field(
        50, ge=0, le=200, description="image searches re-rank this many top hits by local-feature matches "
        "against each image's stored features (catalog/search.py, geometry.rerank_key; recall and cost: "
        "benchmarks/results/search_rerank.md, search_latency.md); 0 = embedding order (the top 10 still get "
        "verified tiers while geometric_check is on)"
    )
    catalog_commit_every: int = Field(256, ge=1, description="images per committed indexing batch")
    index_workers: int | None = Field(None, ge=1, description="decode threads when indexing; None = cores")

    # --- vector store (scale-out) ---------------------------------------------------------------
    store: Literal["faiss", "qdrant", "milvus"] = Field(
        "faiss", description="vector store: embedded FAISS, or a Qdrant/Milvus server (the [scale] extra)"
    )
    store_url: str | None = Field(None, description="server URL of the qdrant/milvus store; None = local mode")
    store_path: Path | None = Field(None, description="local-mode folder of the store; None = inside each catalog")
    store_api_key: SecretStr | None = Field(None, description="API key/token of the store server")

    # --- input limits (checked from the header before full decoding) ---------------------------
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1, description="largest upload accepted")
    max_pixels: int = Field(50_000_000, ge=1, description="largest width x height accepted")
    max_frames: int = Field(1000, ge=1, description="largest frame count of an animation accepted")
    request_timeout_s: float = Field(30.0, gt=0, description="processing time limit per request")
    max_request_bytes: int | None = Field(
        None, ge=1, description="largest request body, counted while streaming; None = 4 x max_upload_bytes + 1 MiB"
    )
    rate_limit_per_minute: int | None = Field(None, ge=1, description="requests per client per minute; None = off")

    # --- service ------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="when set, write endpoints require X-API-Key")
    protect_reads: bool = Field(False, description="require the API key on read endpoints too")
    cors_origins: list[str] = Field([], description="allowed CORS origins; empty = CORS off")
    max_queue: int = Field(64, ge=1, description="requests waiting for inference before 503")
    inference_workers: int = Field(
        2, ge=1, description="threads preparing requests (decode, hashing); forwards still run one at a time, "
        "batched. 1, 2 and 4 measured alike on 2 cores (benchmarks/results/serving.md)"
    )
    embedding_cache_size: int = Field(2048, ge=0, description="embeddings cached by content hash")

    @field_validator("weights_dirs", mode="before")
    @classmethod
    def _split_path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    def threshold_for(self, model_name: str) -> float:
        return self.model_thresholds.get(model_name, self.threshold)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file_path())
        return (init_settings, env_settings, toml)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests override it through FastAPI's ``dependency_overrides``."""
    return Settings()


def describe_sources(settings: Settings) -> list[tuple[str, Any, str]]:
    """(field, value, where it came from) for ``lookalike config show``."""
    path = config_file_path()
    toml_values = TomlConfigSettingsSource(Settings, toml_file=path)() if path.is_file() else {}
    rows = []
    for name in Settings.model_fields:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in os.environ:
            source = f"env {env_name}"
        elif name in toml_values:
            source = f"file {path}"
        elif name in settings.model_fields_set:
            source = "argument"
        else:
            source = "default"
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = "***"
        rows.append((name, value, source))
    return rows
