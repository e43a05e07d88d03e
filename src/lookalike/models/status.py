"""Which models can run here, and with which weights: one table for `lookalike models` and the API."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.config import Settings
from lookalike.errors import WeightsUnavailableError
from lookalike.models.registry import ModelSpec, list_models, onnx_output_dim
from lookalike.models.weights import find_weights, hub_cached, missing_weights_message


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    available: bool
    source: str  # human-readable: where the weights come from, or what to do
    dim: int = 0  # embedding size: the table's, or read from a declared ONNX file (0: unknown)




def model_status(spec: ModelSpec, settings: Settings) -> ModelStatus:
    try:
        source = find_weights(spec, settings)
    except WeightsUnavailableError as exc:
        return ModelStatus(spec, False, exc.message, spec.dim)
    if source is None:
        return ModelStatus(spec, False, "missing: " + missing_weights_message(spec, settings), spec.dim)
    if source.kind == "hub":
        if hub_cached(spec):
            return ModelStatus(spec, True, f"hub {source.location} (cached)", spec.dim)
        return ModelStatus(spec, False, f"hub {source.location} (downloaded on first use; needs internet)", spec.dim)
    if source.kind == "file":
        return ModelStatus(spec, True, f"file ({spec.setting}.onnx): {source.location}", onnx_output_dim(source.location))
    if source.kind == "package" and spec.package_weights is not None:  # the package's name, not the server's path
        name = spec.package_weights.distribution or spec.package_weights.module
        return ModelStatus(spec, True, f"package {name}", spec.dim)
    return ModelStatus(spec, True, f"{source.kind}: {source.location}", spec.dim)


def all_status(settings: Settings) -> list[ModelStatus]:
    enabled = settings.enabled_models
    specs = list_models(settings=settings)
    if enabled is not None:
        from lookalike.models.registry import resolve_model

        names = {resolve_model(n, settings).name for n in enabled}
        specs = [s for s in specs if s.name in names]
    return [model_status(spec, settings) for spec in specs]
