"""Embeddings -> a score and a verdict that mean something.

Score is the seed's (cos + 1) / 2 in [0, 1]. Verdicts are tiered: ``exact`` (same bytes or same
pixels), ``near_duplicate`` (an edited copy), ``similar`` (same thing, another shot),
``different``. Thresholds come from, in order: the per-model config override, the calibration
file (per model and input size, made by ``lookalike calibrate`` from labelled pairs), the shipped
calibrated defaults, then the global config threshold (the seed's 0.80). Every answer says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from lookalike.config import Settings


class Tier(str, Enum):
    EXACT = "exact"
    NEAR_DUPLICATE = "near_duplicate"
    SIMILAR = "similar"
    DIFFERENT = "different"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors (normalized or not); float64 accumulation for a stable last digit."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def normalized_score(cos: float | np.ndarray, *, clip: bool = True) -> float | np.ndarray:
    """The seed's mapping of cosine [-1, 1] onto [0, 1]: (cos + 1) / 2.

    ``clip=False`` maps an order key that may pass 1 (a re-rank key: the cosine plus local
    evidence) onto the same scale without flattening the keys above 1 into ties.
    """
    if isinstance(cos, np.ndarray):
        mapped = (np.asarray(cos, dtype=np.float64) + 1.0) / 2.0
        return np.clip(mapped, 0.0, 1.0) if clip else mapped
    mapped = (cos + 1.0) / 2.0
    return min(1.0, max(0.0, mapped)) if clip else mapped


@dataclass(frozen=True)
class Thresholds:
    """Score thresholds ((cos+1)/2 scale) for one model and input size."""

    match: float  # the yes/no line: score >= match means "the same thing"
    near_duplicate: float
    similar: float
    source: str  # where these numbers came from

    def is_match(self, score: float, tier: Tier) -> bool:
        """The yes/no answer: a copy by tier (exact, near_duplicate), or a score on the match line."""
        return tier in (Tier.EXACT, Tier.NEAR_DUPLICATE) or score >= self.match

    def tier(self, score: float, *, exact: bool = False) -> Tier:
        if exact:
            return Tier.EXACT
        if score >= self.near_duplicate:
            return Tier.NEAR_DUPLICATE
        if score >= self.similar:
            return Tier.SIMILAR
        return Tier.DIFFERENT


SHIPPED_CALIBRATION = "quality/calibration_defaults.json"  # inside the package


def calibration_key(model: str, input_size: int) -> str:
    return f"{model}@{input_size}"


@lru_cache(maxsize=8)
def _load_calibration(path: str, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text())


def load_calibration(settings: Settings) -> tuple[dict, str]:
    """The calibration table in force and a label saying where it came from."""
    if settings.calibration_file is not None:
        path = Path(settings.calibration_file).expanduser()
        if path.is_file():
            return _load_calibration(str(path), path.stat().st_mtime_ns), f"calibration file {path}"
    return _shipped_calibration()


@lru_cache(maxsize=1)
def _shipped_calibration() -> tuple[dict, str]:
    """Read once per process: it is package data and does not change while we run."""
    shipped = resources.files("lookalike").joinpath(SHIPPED_CALIBRATION)
    if shipped.is_file():
        return json.loads(shipped.read_text()), "shipped calibration (dev set)"
    return {}, ""


def thresholds_for(model: str, input_size: int, settings: Settings) -> Thresholds:
    table, label = load_calibration(settings)
    entry = table.get("models", {}).get(calibration_key(model, input_size))
    if model in settings.model_thresholds:
        match = settings.model_thresholds[model]
        source = f"config model_thresholds.{model}"
    elif entry is not None:
        match = float(entry["match"])
        source = f"{label} [{calibration_key(model, input_size)}]"
    else:
        match = settings.threshold
        source = "config threshold" if "threshold" in settings.model_fields_set else "default threshold (seed's 0.80)"
    if entry is not None:
        near = float(entry.get("near_duplicate", match))
        similar = float(entry.get("similar", min(match, near)))
    else:
        near, similar = match, min(match, 0.75)
    return Thresholds(match=match, near_duplicate=near, similar=similar, source=source)


def seed_threshold(model: str, settings: Settings) -> float:
    """The seed endpoint's yes/no line: the configured threshold, 0.80 unless overridden."""
    return settings.threshold_for(model)


# --- copy decisions by a copy detector (issue 12) ------------------------------------------------
# A similarity model (EfficientNet) scores "another shot of the same object" about as high as "an
# edited copy"; a copy-detection descriptor (SSCD) was trained to tell them apart. With
# ``settings.copy_model`` set, ``exact``/``near_duplicate`` are decided by that descriptor's score
# (plus the geometric check in its unsure band) and ``similar``/``different`` by the similarity
# model (benchmarks/copy_compare.py, benchmarks/results/accuracy.md "Copy decisions").
COPY_TIERS = (Tier.EXACT, Tier.NEAR_DUPLICATE)


@dataclass(frozen=True)
class CopyLines:
    """Lines on the copy detector's (cos+1)/2 score, for one copy model and input size."""

    candidate: float  # below: never a copy
    sure: float  # at or above: a copy without the check
    match: float  # with the geometric check off: a copy at or above this line (its best-F1 line)
    source: str


def copy_lines_for(model: str, input_size: int, settings: Settings) -> CopyLines:
    """The calibrated copy lines (``"copy_lines"`` of the calibration table in force, else the shipped
    one); without them: the model's own match line, checked down to its similar line."""
    for table, label in (load_calibration(settings), _shipped_calibration()):
        entry = table.get("copy_lines", {}).get(calibration_key(model, input_size))
        if entry is not None:
            return CopyLines(float(entry["candidate"]), float(entry["sure"]), float(entry["match"]),
                             f"{label} [copy_lines {calibration_key(model, input_size)}]")
    plain = thresholds_for(model, input_size, settings)
    return CopyLines(plain.similar, 1.0, plain.match, f"{plain.source} (no copy lines: match line, checked "
                     "down to the similar line)")


# A pair below the copy band scoring at most this far under the similar line is asked whether the
# geometric check finds one object in both (``copy_tier``'s ``same_object``; ``geometry.FLOOR``, the
# band the score-only decision checks too).
SAME_OBJECT_BAND = 0.04


def copy_tier(score: float, copy_score: float, thresholds: Thresholds, lines: CopyLines, *,
              exact: bool = False, check=None, same_object=None) -> tuple[Tier, bool]:  # noqa: ANN001 - () -> bool
    """(tier, whether the check ran) from the similarity score, the copy detector's score and, in the
    copy band, ``check()``: whether the geometric check says copy (``comparison.copy_check``: the pixels
    line up as only a copy does; None: no check, the copy model's match line decides).

    A pair in the copy band that the check does not verify is ``similar`` whatever the similarity
    score: the copy detector found it close, the pixels say another shot (or a look-alike). Below the
    band, a similarity score less than ``SAME_OBJECT_BAND`` under the similar line is ``similar`` when
    ``same_object()`` says the check finds one object in both (``comparison.same_object``; None: not asked)."""
    if exact:
        return Tier.EXACT, False
    if copy_score >= lines.sure:
        return Tier.NEAR_DUPLICATE, False
    not_copy = Tier.SIMILAR if score >= thresholds.similar or copy_score >= lines.candidate else Tier.DIFFERENT
    if copy_score < lines.candidate:
        if (not_copy is Tier.DIFFERENT and same_object is not None
                and score >= thresholds.similar - SAME_OBJECT_BAND):
            return (Tier.SIMILAR if same_object() else Tier.DIFFERENT), True
        return not_copy, False
    if check is None:
        return (Tier.NEAR_DUPLICATE if copy_score >= lines.match else not_copy), False
    return (Tier.NEAR_DUPLICATE if check() else not_copy), True
