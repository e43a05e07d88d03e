"""Thresholds from labelled data, stored per model and input size where the service reads them.

Three lines on the (cos+1)/2 score, picked from data instead of by hand:

- ``match``: the yes/no line for "an edited copy of the same photo": best F1 on labelled pairs,
  or, with ``target_precision``, the lowest score whose precision reaches it (fewest misses for
  the precision asked).
- ``near_duplicate``: the same line as ``match`` (an edited copy is what the pairs label says).
- ``similar``: the line for "same object or scene, another shot": best F1 of the same-group pairs
  of a groups CSV (default: ``groups.csv`` next to the pairs CSV) against the pairs' different
  photos, else the score that only 5 % of the different pairs reach. Never above ``match``.

The file format is the one ``similarity.thresholds_for`` reads::

    {"models": {"<model>@<size>": {"match", "near_duplicate", "similar", "method", "metrics",
                                     "n_pairs", "created_at"}}}
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


@dataclass
class Calibration:
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

    @property
    def key(self) -> str:
        return calibration_key(self.model, self.input_size)

    def entry(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("model")
        data.pop("input_size")
        return data


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


def write_calibration(path: str | os.PathLike, calibrations: Sequence[Calibration]) -> Path:
    """Merge entries into the file (other models' entries are kept); atomic replace."""
    path = Path(path).expanduser()
    data = read_calibration_file(path)
    for calibration in calibrations:
        data["models"][calibration.key] = calibration.entry()
    data["models"] = dict(sorted(data["models"].items()))
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
