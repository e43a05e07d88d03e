"""Configuration: one typed ``Settings`` read once, then passed down.

Sources, highest priority first: explicit keyword arguments, ``LOOKALIKE_*`` environment variables,
a TOML file (``LOOKALIKE_CONFIG``, else ``./lookalike.toml``, else the user config dir), defaults.
Nothing else in the package reads environment variables: code receives a ``Settings``.

Mistakes are caught here, each as one ``ConfigError`` that names the setting, where its value came
from (env variable or file, with line/column for TOML syntax) and the fix: a bad value, a broken TOML,
an explicitly named config file that does not exist, an unknown ``default_model``. Unknown keys in the
file warn (``ConfigWarning``) with the closest valid name. ``LOOKALIKE_CONFIG=none`` reads no file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator,
                      model_validator)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from lookalike.errors import ConfigError

APP_NAME = "lookalike"
ENV_PREFIX = "LOOKALIKE_"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"
NO_CONFIG_FILE = ("", "none")  # LOOKALIKE_CONFIG=none (or empty): defaults and env only, no file


class ConfigWarning(UserWarning):
    """Something in the config is probably a mistake but not fatal (an unknown key)."""


def default_config_file() -> Path:
    """Where the TOML config is looked for when ``LOOKALIKE_CONFIG`` is not set."""
    local = Path("lookalike.toml")
    if local.is_file():
        return local
    return Path(platformdirs.user_config_dir(APP_NAME)) / "lookalike.toml"


def config_file_path() -> Path | None:
    """The config file to read: ``LOOKALIKE_CONFIG`` (None when it is ``none``), else the default place."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit is None:
        return default_config_file()
    if explicit.strip().lower() in NO_CONFIG_FILE:
        return None
    return Path(explicit).expanduser()


def config_file_in_force() -> Path | None:
    """The file whose values are in force: None when no file is read (a missing default file is normal)."""
    path = config_file_path()
    return path if path is not None and path.is_file() else None


def _read_config_file(settings_cls: type[BaseSettings]) -> TomlConfigSettingsSource:
    """The TOML source, or a ConfigError naming the file (missing when named explicitly, or bad TOML)."""
    path = config_file_path()
    if path is not None and os.environ.get(CONFIG_ENV) is not None and not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"config file {path} (from {CONFIG_ENV}) {what}.\n"
            f"Fix: create it (lookalike.example.toml lists every setting), point {CONFIG_ENV} at an existing "
            f"file, or set {CONFIG_ENV}=none to read no file.", code="config_file_missing")
    try:
        source = TomlConfigSettingsSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}.\n"
                          f"Fix that line (TOML: key = value, strings in quotes), or set {CONFIG_ENV}=none.",
                          code="config_file_invalid") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}", code="config_file_invalid") from None
    _warn_unknown_keys(source.toml_data, path, settings_cls)
    return source


def _warn_unknown_keys(data: dict[str, Any], path: Path | None, settings_cls: type[BaseSettings]) -> None:
    known = list(settings_cls.model_fields)
    for key in data:
        if key in settings_cls.model_fields:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see lookalike.example.toml for the valid names"
        warnings.warn(f"config file {path}: unknown setting {key!r} is ignored; {hint}", ConfigWarning, stacklevel=2)


def _value_source(name: str) -> str:
    """Where a setting's (bad) value came from, for error messages."""
    env_name = f"{ENV_PREFIX}{name.upper()}"
    if env_name in os.environ:
        return f"env {env_name}"
    path = config_file_in_force()
    if path is not None:
        try:
            if name in tomllib.loads(path.read_text(encoding="utf-8")):
                return f"config file {path}"
        except (OSError, tomllib.TOMLDecodeError):
            pass
    return "argument"


def _explain_unparsable(exc: SettingsError, settings_cls: type[BaseSettings]) -> str:
    """pydantic-settings' 'error parsing value for field "x"' as the variable, its value and an example."""
    match = re.search(r'field "([^"]+)"', str(exc))
    name = match.group(1) if match else "?"
    env_name = f"{ENV_PREFIX}{name.upper()}"
    value = os.environ.get(env_name)
    shown = f"={value!r}" if value is not None else ""
    field = settings_cls.model_fields.get(name)
    example = json.dumps(field.get_default(call_default_factory=True), default=str) if field is not None else "..."
    return (f"setting {name}: {env_name}{shown} cannot be parsed: lists and tables in environment variables "
            f"are JSON.\n  Fix: e.g. {env_name}='{example}' (the default), or unset {env_name}.")


def _explain(exc: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """A pydantic ValidationError as a few lines: setting, value, source, what is expected, how to fix."""
    lines = []
    errors = exc.errors(include_url=False)
    for error in errors[:2]:
        loc = [str(part) for part in error["loc"]]
        name = loc[0] if loc else "?"
        field = settings_cls.model_fields.get(name)
        source = _value_source(name)
        where = f"{ENV_PREFIX}{name.upper()}" if source.startswith("env") else name
        shown = error.get("input")
        shown = shown if isinstance(shown, (str, int, float, bool)) else None
        value = f" = {shown!r}" if shown is not None else ""
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"setting {'.'.join(loc)}{value} (from {source}) is invalid: {message}.")
        if field is not None:
            default = field.get_default(call_default_factory=True)
            about = f"{field.description}; " if field.description else ""
            lines.append(f"  {name}: {about}default {default!r}. Fix or remove {where}.")
    if len(errors) > 2:
        lines.append(f"  ... and {len(errors) - 2} more invalid settings")
    return "\n".join(lines)


Backend = Literal["auto", "onnxruntime", "openvino", "torch"]
Preprocess = Literal["resize", "crop"]
Pooling = Literal["avg", "gem", "max"]


class DeclaredModel(BaseModel):
    """An ONNX embedding model declared in the config file (``[models.NAME]``): no code change.

    The file's first input takes a batch of square images, its first output is the ``(batch, dim)``
    embedding (L2-normalized by lookalike). ``dtype = "uint8"`` feeds raw RGB pixels (the graph
    normalizes; mean/std unused), ``"float32"`` feeds ``(pixel/255 - mean) / std``.
    """

    model_config = ConfigDict(extra="forbid")

    onnx: Path = Field(description="the .onnx file")
    input_size: int = Field(224, ge=16, le=4096, description="square input side in pixels")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="channel order of the input tensor")
    dtype: Literal["float32", "uint8"] = Field("float32", description="input element type")
    mean: tuple[float, float, float] = Field((0.485, 0.456, 0.406), description="per-channel mean (float32 only)")
    std: tuple[float, float, float] = Field((0.229, 0.224, 0.225), description="per-channel std (float32 only)")
    resize: Preprocess = Field("resize", description="'resize' the whole image or scale + centre 'crop'")
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    description: str = ""

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("every std must be > 0")
        return value


class Settings(BaseSettings):
    """Every knob of lookalike, with the seed's defaults where the seed had one."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_nested_delimiter="__")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, type(self)), code="bad_setting") from None
        except SettingsError as exc:  # an env value that should be JSON (a list, a table) is not
            raise ConfigError(_explain_unparsable(exc, type(self)), code="bad_setting") from None

    # --- models -------------------------------------------------------------------------------
    models: dict[str, DeclaredModel] = Field(
        {}, description="ONNX embedding models declared by file ([models.NAME] in the config; docs/models.md)"
    )
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
        description="folders searched for weights files named in the model table (env: os.pathsep-separated); "
        "default: cache_dir/weights",
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
    copy_model: str = Field(
        "sscd_distilled", description="copy detector deciding exact/near_duplicate in compare and eval pairs "
        "(similar/different stay the model's; benchmarks/results/accuracy.md); \"none\": the model's score + "
        "the geometric check; a missing package (or a model left out of enabled_models) falls back to that with a "
        "logged note"
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
    index_local_features: bool = Field(
        True, description="store each image's local features (~20 KB: 300 ORB corners + a small grey image) "
        "while indexing, so no search ever decodes a hit (indexing cost: benchmarks/results/catalog_throughput.md). "
        "Off: a hit's features are computed on the first search that needs them and stored then"
    )
    search_feature_cache: int = Field(
        1024, ge=0, description="catalog images whose local features searches keep unpacked in memory, most "
        "recently used first (~20-80 KB each with the grey image a tier check decoded); 0 = read them from "
        "features.sqlite every search"
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

    @model_validator(mode="after")
    def _register_declared_models(self) -> "Settings":
        """Declared models join the model table, so every name lookup (catalogs, API, CLI) finds them."""
        if self.models:
            from lookalike.models.registry import register_declared_models

            register_declared_models(self.models)  # raises ValueError on a clash with a built-in name
        return self

    @field_validator("default_model")
    @classmethod
    def _known_model(cls, value: str, info: ValidationInfo) -> str:
        """``default_model`` must be in the model table or declared under ``[models.NAME]``."""
        from lookalike.errors import UnknownModelError
        from lookalike.models.registry import resolve_model  # cheap: no torch, no timm

        if value in (info.data.get("models") or {}):  # declared in this config (validated before this field)
            return value
        try:
            return resolve_model(value).name
        except UnknownModelError as exc:
            raise ValueError(f"{exc.message} (`lookalike models` shows the table)") from None

    @field_validator("copy_model")
    @classmethod
    def _known_copy_model(cls, value: str, info: ValidationInfo) -> str:
        """``copy_model`` is ``none`` or a model of the table (a typo fails here, not at the first compare)."""
        if value.strip().lower() == "none":
            return "none"
        return cls._known_model(value, info)

    @model_validator(mode="after")
    def _weights_follow_cache_dir(self) -> "Settings":
        """Unless weights_dirs is set, weights live under cache_dir, so LOOKALIKE_CACHE_DIR moves them too."""
        if "weights_dirs" not in self.model_fields_set:
            self.__dict__["weights_dirs"] = [self.cache_dir / "weights"]
        return self

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
        return (init_settings, env_settings, _read_config_file(settings_cls))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests override it through FastAPI's ``dependency_overrides``."""
    return Settings()


def describe_sources(settings: Settings) -> list[tuple[str, Any, str]]:
    """(field, value, where it came from) for ``lookalike config show``."""
    path = config_file_in_force()
    toml_values = TomlConfigSettingsSource(Settings, toml_file=path)() if path is not None else {}
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
