"""``GET /v1/models`` and ``GET /healthz``."""

from __future__ import annotations

from fastapi import APIRouter

from lookalike import __version__
from lookalike.models.status import all_status
from lookalike.api.deps import ReadAccess, StateDep
from lookalike.api.schemas import Health, ModelInfo

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=list[ModelInfo], dependencies=[ReadAccess])
def list_models(state: StateDep) -> list[ModelInfo]:
    loaded = {name for name, _ in state.pool.loaded()}
    return [
        ModelInfo(
            name=s.spec.name,
            aliases=list(s.spec.aliases),
            dim=s.dim,
            default_input_size=s.spec.default_size,
            weights_available=s.available,
            weights_source=s.source,
            description=s.spec.description,
            loaded=s.spec.name in loaded,
        )
        for s in all_status(state.settings)
    ]


@router.get("/healthz", response_model=Health, tags=["health"])
def health(state: StateDep) -> Health:
    return Health(
        status="ok",
        version=__version__,
        default_model=state.settings.default_model,
        loaded_models=[f"{name}@{size}" for name, size in state.pool.loaded()],
        queue=state.gate.pending,
    )
