"""Thresholds from labelled data, stored per model and input size where the service reads them.

Three lines on the (cos+1)/2 score, picked from data instead of by hand:

- ``match``: the yes/no line for "an edited copy of the same photo": best F1 on labelled pairs,
  or, with ``target_precision``, the lowest score whose precision reaches it (fewest misses for
  the precision asked).
- ``near_duplicate``: the same line as ``match`` (an edited copy is what the pairs label says).
- ``similar``: the line for "same object or scene, another shot": best F1 of the same-group pairs
  of a groups CSV (default: ``groups.csv`` next to the pairs CSV) against the pairs' different
  photos, else the score that only 5 % of the different pairs reach. Never above ``match``.

The file format is the one ``similarity.thresholds_for`` (and ``copy_lines_for``) reads::

    {"models": {"<model>@<size>": {"match", "near_duplicate", "similar", "method", "metrics",
                                     "n_pairs", "created_at"}},
     "copy_lines": {"<copy model>@<size>": {"candidate", "sure", "match", "method", ...}}}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.quality.evaluation import EvalDataError, best_f1_threshold, pair_metrics, prf_at
from lookalike.quality.plots import curves_from_scores
from lookalike.similarity import calibration_key
from lookalike.similarity import normalized_score


class _TableEntry:
    """An entry of the calibration table: filed under ``<model>@<size>``, stored without those two."""

    model: str
    input_size: int

    @property
    def key(self) -> str:
        return calibration_key(self.model, self.input_size)

    def entry(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("model")
        data.pop("input_size")
        return data


@dataclass
class Calibration(_TableEntry):
    model: str
    input_size: int
    match: float
    near_duplicate: float
    similar: float
    method: str
    metrics: dict[str, Any] = field(default_factory=dict)
    n_pairs: int = 0
    created_at: str = ""
    curves: dict[str, Any] = field(default_factory=dict)  # for plots (see plots.curves_from_scores)


def precision_threshold(scores: np.ndarray, labels: np.ndarray, target: float) -> float | None:
    """Lowest cut (midpoint between scores) whose precision on these pairs is >= ``target``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    candidates = np.unique(scores)[::-1]
    best = None
    for i, s in enumerate(candidates):
        precision, recall, _ = prf_at(scores, labels, s)
        if precision >= target and recall > 0:
            below = candidates[i + 1] if i + 1 < len(candidates) else s - 1e-3
            best = float((s + below) / 2.0)
        elif best is not None and precision < target:
            break
    return best


def similar_threshold(same_scores: np.ndarray | None, negative_pair_scores: np.ndarray) -> tuple[float, str]:
    """The "same object, another shot" line, and how it was chosen.

    Same-group pairs (other shots) against the different-photo pairs of the pairs CSV. Not against
    other groups: look-alike products and objects shot on one shared background score as high as
    other shots of one object, and a global embedding cannot tell those apart (accuracy.md).
    """
    if same_scores is not None and len(same_scores):
        scores = np.r_[same_scores, negative_pair_scores]
        labels = np.r_[np.ones(len(same_scores)), np.zeros(len(negative_pair_scores))]
        _, threshold = best_f1_threshold(scores, labels)
        return threshold, "best F1 same-group pairs vs different-photo pairs"
    return float(np.quantile(negative_pair_scores, 0.95)), "95th percentile of different-photo pairs"


def group_pair_scores(embeddings: np.ndarray, groups: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Scores of all same-group pairs and all different-group pairs of L2-normalized embeddings."""
    emb = np.asarray(embeddings, dtype=np.float64)
    g = np.asarray(groups)
    scores = normalized_score(emb @ emb.T)
    upper = np.triu(np.ones_like(scores, dtype=bool), k=1)
    same = (g[:, None] == g[None, :]) & upper
    return scores[same], scores[~(g[:, None] == g[None, :]) & upper]


def calibrate_scores(
    model: str,
    input_size: int,
    scores: Sequence[float],
    labels: Sequence[int],
    *,
    kinds: Sequence[str] | None = None,
    target_precision: float | None = None,
    same_group_scores: np.ndarray | None = None,
    source: str = "",
) -> Calibration:
    """Pick the three thresholds from pair scores (and optionally group pair scores)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(set(labels.tolist())) < 2:
        raise EvalDataError("calibration needs both same (1) and different (0) pairs")
    _, best_t = best_f1_threshold(scores, labels)
    match, method = best_t, "best F1"
    if target_precision is not None:
        found = precision_threshold(scores, labels, target_precision)
        if found is None:
            raise EvalDataError(f"no threshold reaches precision {target_precision} on these pairs")
        match, method = found, f"target precision {target_precision}"
    other_view = np.array(["other_view" in k or "same_scene" in k for k in kinds]) if kinds is not None else False
    similar, similar_method = similar_threshold(same_group_scores, scores[(labels == 0) & ~other_view])
    similar = min(similar, match)
    metrics = pair_metrics(scores, labels, match, kinds)
    summary = {**metrics.summary(), "precision_at_threshold": metrics.precision_at_threshold,
               "recall_at_threshold": metrics.recall_at_threshold, "similar_method": similar_method}
    if source:
        summary["source"] = source
    return Calibration(
        model=model, input_size=input_size, match=round(float(match), 6), near_duplicate=round(float(match), 6),
        similar=round(float(similar), 6), method=method, metrics=summary, n_pairs=len(labels),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        curves=curves_from_scores(scores, labels),
    )


def calibrate_embedder(
    embedder,
    pairs_csv: str | Path | None,
    *,
    groups_csv: str | Path | None = None,
    target_precision: float | None = None,
    feedback=None,
    pooling: str | None = None,  # recorded with the thresholds: they hold for this pooling only
) -> Calibration:
    """Score labelled pairs (CSV and/or stored feedback) with ``embedder`` and pick thresholds."""
    from lookalike.quality.evaluation import cosine_pair_scores, embed_paths, load_groups, load_pairs

    path_a: list[Path] = []
    path_b: list[Path] = []
    labels: list[int] = []
    kinds: list[str] = []
    sources = []
    if pairs_csv is not None:
        pairs = load_pairs(pairs_csv)
        path_a += pairs.path_a
        path_b += pairs.path_b
        labels += pairs.labels.tolist()
        kinds += pairs.kinds
        sources.append(str(pairs_csv))
        if groups_csv is None and (Path(pairs_csv).parent / "groups.csv").is_file():
            groups_csv = Path(pairs_csv).parent / "groups.csv"
    if feedback is not None:
        from lookalike.quality.feedback import open_feedback

        with open_feedback(feedback) as store:
            stored = store.labelled_pairs()
        if not stored:
            raise EvalDataError("no feedback stored yet (POST /v1/feedback)")
        for a, b, label in stored:
            path_a.append(a)
            path_b.append(b)
            labels.append(label)
            kinds.append("feedback_same" if label else "feedback_different")
        sources.append(f"{len(stored)} feedback pairs")
    if not labels:
        raise EvalDataError("no labelled pairs to calibrate from")
    vectors = embed_paths(embedder, [*path_a, *path_b])
    scores = cosine_pair_scores(vectors, path_a, path_b)
    same = None
    if groups_csv is not None:
        groups = load_groups(groups_csv)
        group_vectors = embed_paths(embedder, groups.paths)
        same, _ = group_pair_scores(np.stack([group_vectors[str(p)] for p in groups.paths]), groups.groups)
        sources.append(str(groups_csv))
    return calibrate_scores(
        embedder.model_name, embedder.input_size, scores, labels, kinds=kinds, target_precision=target_precision,
        same_group_scores=same,
        source=f"{'; '.join(sources)} ({embedder.preprocessing.mode}, {pooling or 'avg'} pooling)",
    )


# ----------------------------------------------------------------------------------- copy lines
# A copy detector (SSCD) decides exact/near_duplicate in compare by two lines on its score
# (``similarity.CopyLines``): from ``sure`` up a copy on the score alone, from ``candidate`` up the
# geometric check decides (``comparison.copy_check``). Both are picked from labelled pairs, other
# shots of one object (groups) counting as negatives that weigh ``SHOT_WEIGHT`` false pairs each
# (benchmarks/copy_compare.py picks the shipped ones the same way, on more data).
COPY_LINE_GRID = np.round(np.arange(0.50, 1.0001, 0.0125), 4)
SHOT_WEIGHT = 5


@dataclass
class CopyCalibration(_TableEntry):
    model: str
    input_size: int
    candidate: float
    sure: float
    match: float  # the copy model's own best-F1 line: the decision when the geometric check is off
    method: str
    metrics: dict[str, Any] = field(default_factory=dict)
    n_pairs: int = 0
    created_at: str = ""


def pick_copy_lines(scores: Sequence[float], labels: Sequence[int], says_copy: Sequence[bool],
                    weights: Sequence[float] | None = None) -> tuple[float, float, float, float]:
    """(candidate, sure, weighted F1, share of pairs checked): the lines on ``COPY_LINE_GRID`` whose
    verdicts (a copy at or above ``sure``; between the lines, where ``says_copy``) give the best F1, a
    negative's false call weighing its ``weights`` entry; ties: the fewest pairs checked."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    says = np.asarray(says_copy, dtype=bool)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(s) == 0 or y.all() or not y.any():
        raise EvalDataError("copy lines need both copies (1) and non-copies (0)")
    best = None
    for candidate in COPY_LINE_GRID:
        for sure in COPY_LINE_GRID[COPY_LINE_GRID >= candidate]:
            band = (s >= candidate) & (s < sure)
            called = (s >= sure) | (band & says)
            tp = float((called & y).sum())
            fp = float((w * (called & ~y)).sum())
            fn = float((~called & y).sum())
            f1 = 2 * tp / max(2 * tp + fp + fn, 1e-12)
            key = (round(f1, 6), -int(band.sum()))
            if best is None or key > best[0]:
                best = (key, float(candidate), float(sure), f1, float(band.mean()))
    return best[1], best[2], best[3], best[4]


def calibrate_copy_lines(embedder, pairs_csv: str | Path, *, match: float, groups_csv: str | Path | None = None,
                         limits=None) -> CopyCalibration:  # noqa: ANN001 - an Embedder, ImageLimits
    """Copy lines of a copy-detector ``embedder`` from labelled pairs (and the other shots of a groups
    CSV, default ``groups.csv`` beside the pairs): its scores, and the geometric check on every pair
    scoring at or above the lowest line tried."""
    from itertools import combinations

    from lookalike.comparison import copy_check
    from lookalike.geometry import match_features
    from lookalike.quality.evaluation import cosine_pair_scores, embed_paths, features_by_path, load_groups, load_pairs

    pairs = load_pairs(pairs_csv)
    path_a, path_b = list(pairs.path_a), list(pairs.path_b)
    labels = pairs.labels.tolist()
    weights = [1.0] * len(labels)
    sources = [str(pairs_csv)]
    if groups_csv is None and (Path(pairs_csv).parent / "groups.csv").is_file():
        groups_csv = Path(pairs_csv).parent / "groups.csv"
    if groups_csv is not None:
        groups = load_groups(groups_csv)
        by_group: dict[str, list[Path]] = {}
        for path, group in zip(groups.paths, groups.groups):
            by_group.setdefault(group, []).append(path)
        shots = [pair for members in by_group.values() for pair in combinations(members, 2)]
        path_a += [a for a, _ in shots]
        path_b += [b for _, b in shots]
        labels += [0] * len(shots)
        weights += [float(SHOT_WEIGHT)] * len(shots)
        sources.append(f"{groups_csv} ({len(shots)} other-shot pairs)")
    vectors = embed_paths(embedder, [*path_a, *path_b])
    scores = cosine_pair_scores(vectors, path_a, path_b)
    features_of = features_by_path(limits)
    says = [bool(score >= COPY_LINE_GRID[0] and copy_check(match_features(features_of(a), features_of(b))))
            for a, b, score in zip(path_a, path_b, scores)]
    candidate, sure, f1, checked = pick_copy_lines(scores, labels, says, weights)
    return CopyCalibration(
        model=embedder.model_name, input_size=embedder.input_size, candidate=candidate, sure=sure,
        match=round(float(match), 6),
        method=f"best F1 of the copy verdicts (other shots weigh {SHOT_WEIGHT}), the geometric check between the lines",
        metrics={"f1": f1, "checked_share": checked, "source": "; ".join(sources)}, n_pairs=len(labels),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# ----------------------------------------------------------------------------------- file


def read_calibration_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        return {"models": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
        raise EvalDataError(f"{path} is not a calibration file (expected {{'models': {{...}}}})")
    data.setdefault("models", {})
    return data


def write_calibration(path: str | os.PathLike, calibrations: Sequence[Calibration],
                      copy_lines: Sequence[CopyCalibration] = ()) -> Path:
    """Merge entries (and copy lines, under ``"copy_lines"``) into the file (other models' entries are
    kept); atomic replace."""
    path = Path(path).expanduser()
    data = read_calibration_file(path)
    for calibration in calibrations:
        data["models"][calibration.key] = calibration.entry()
    data["models"] = dict(sorted(data["models"].items()))
    if copy_lines:
        known = data.get("copy_lines", {})
        known.update({lines.key: lines.entry() for lines in copy_lines})
        data["copy_lines"] = dict(sorted(known.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a calibration file is not a secret
    os.replace(tmp, path)
    return path


def read_entry(path: str | os.PathLike, model: str, input_size: int) -> Calibration | None:
    entry = read_calibration_file(path)["models"].get(calibration_key(model, input_size))
    if entry is None:
        return None
    fields = {k: entry[k] for k in ("match", "near_duplicate", "similar") if k in entry}
    return Calibration(model=model, input_size=input_size, method=entry.get("method", ""),
                       metrics=entry.get("metrics", {}), n_pairs=entry.get("n_pairs", 0),
                       created_at=entry.get("created_at", ""), curves=entry.get("curves", {}), **fields)
