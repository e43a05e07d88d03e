"""Which models can run here, and with which weights: one table for `lookalike models` and the API."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.config import Settings
from lookalike.errors import WeightsUnavailableError
from lookalike.models.registry import ModelSpec, list_models
from lookalike.models.weights import find_weights


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    available: bool
    source: str  # human-readable: where the weights come from, or what to do


def hub_cached(spec: ModelSpec) -> bool:
    """True when timm's hub weights were downloaded before (usable offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo = f"timm/{spec.name}.{spec.hub_tag}"
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin"))


def model_status(spec: ModelSpec, settings: Settings) -> ModelStatus:
    try:
        source = find_weights(spec, settings)
    except WeightsUnavailableError as exc:
        return ModelStatus(spec, False, exc.message)
    if source is None:
        folder = settings.weights_dirs[0] if settings.weights_dirs else "a weights folder"
        wanted = spec.weight_files[0] if spec.weight_files else f"{spec.name}.pth"
        hub = "" if settings.allow_hub_download else " (hub downloads are off)"
        return ModelStatus(spec, False, f"missing: put {wanted} in {folder}{hub}")
    if source.kind == "hub":
        if hub_cached(spec):
            return ModelStatus(spec, True, f"hub {source.location} (cached)")
        return ModelStatus(spec, False, f"hub {source.location} (downloaded on first use; needs internet)")
    if source.kind == "package" and spec.package_weights and spec.package_weights.distribution:
        return ModelStatus(spec, True, f"package {spec.package_weights.distribution}: {source.location}")
    return ModelStatus(spec, True, f"{source.kind}: {source.location}")


def all_status(settings: Settings) -> list[ModelStatus]:
    enabled = settings.enabled_models
    specs = list_models()
    if enabled is not None:
        from lookalike.models.registry import resolve_model

        names = {resolve_model(n).name for n in enabled}
        specs = [s for s in specs if s.name in names]
    return [model_status(spec, settings) for spec in specs]
