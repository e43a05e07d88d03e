"""``GET /v1/calibration`` (thresholds in force per model and where they came from) and the plots."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from lookalike.errors import NotFoundError
from lookalike.models.registry import resolve_model
from lookalike.models.status import all_status
from lookalike.quality.plots import PLOT_KINDS, render
from lookalike.similarity import calibration_key, load_calibration, thresholds_for
from lookalike.api.deps import ReadAccess, StateDep
from lookalike.api.schemas import ThresholdSet

router = APIRouter(prefix="/v1", tags=["calibration"])


class CalibratedModel(BaseModel):
    model: str
    input_size: int
    thresholds: ThresholdSet
    source: str
    metrics: dict[str, Any] | None = None


class CalibrationTable(BaseModel):
    models: list[CalibratedModel]


def _split_key(key: str) -> tuple[str, int] | None:
    name, _, size = key.rpartition("@")
    return (name, int(size)) if name and size.isdigit() else None


@router.get("/calibration", response_model=CalibrationTable, dependencies=[ReadAccess])
def calibration_table(state: StateDep) -> CalibrationTable:
    settings = state.settings
    table, _ = load_calibration(settings)
    entries = table.get("models", {})
    keys = [(s.spec.name, s.spec.default_size) for s in all_status(settings) if s.available]
    keys += [k for k in map(_split_key, entries) if k is not None and k not in keys]
    rows = []
    for model, size in keys:
        t = thresholds_for(model, size, settings)
        entry = entries.get(calibration_key(model, size))
        rows.append(CalibratedModel(
            model=model, input_size=size, source=t.source,
            thresholds=ThresholdSet(match=t.match, near_duplicate=t.near_duplicate, similar=t.similar),
            metrics=entry.get("metrics") if entry else None,
        ))
    return CalibrationTable(models=rows)


@router.get("/calibration/plots/{model}/{kind}.png", response_class=Response, dependencies=[ReadAccess],
            responses={200: {"content": {"image/png": {}}}})
def calibration_plot(model: str, kind: str, state: StateDep, input_size: int | None = None) -> Response:
    """ROC (``roc``), score histograms (``hist``) or precision/recall vs threshold (``pr``) of a calibration.

    ``model`` is a name or alias, optionally ``name@size``."""
    if kind not in PLOT_KINDS:
        raise NotFoundError(f"unknown plot {kind!r}; one of {', '.join(PLOT_KINDS)}")
    name, _, size_text = model.partition("@")
    spec = resolve_model(name)
    size = int(size_text) if size_text.isdigit() else input_size or spec.default_size
    table, _ = load_calibration(state.settings)
    entry = table.get("models", {}).get(calibration_key(spec.name, size))
    if not entry or not entry.get("curves"):
        raise NotFoundError(f"no calibration curves for {spec.name}@{size}; run `lookalike calibrate`")
    t = thresholds_for(spec.name, size, state.settings)
    png = render(kind, entry["curves"], t.match, f"{spec.name}@{size}")
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=300"})
