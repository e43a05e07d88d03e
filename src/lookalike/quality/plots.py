"""Pictures of a threshold choice: ROC, score histograms, precision/recall against the threshold.

Plots are drawn from compact ``curves`` (a few hundred numbers) rather than raw scores, so a
calibration entry can carry them and the API can draw them for any calibrated model without the
evaluation images. matplotlib (Agg, no display) is imported only when drawing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PLOT_KINDS = ("roc", "hist", "pr")


def curves_from_scores(scores: Sequence[float], labels: Sequence[int], bins: int = 50, points: int = 101) -> dict[str, Any]:
    """ROC points, positive/negative histograms and P/R at evenly spaced thresholds."""
    from sklearn.metrics import roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    fpr, tpr, _ = roc_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).round().astype(int))
    lo, hi = float(min(scores.min(), 0.5)), 1.0
    edges = np.linspace(lo, hi, bins + 1)
    thresholds = np.linspace(lo, hi, points)
    precision, recall = [], []
    for t in thresholds:
        predicted = scores >= t
        tp = int(np.sum(predicted & labels))
        fp = int(np.sum(predicted & ~labels))
        precision.append(tp / (tp + fp) if tp + fp else 1.0)
        recall.append(tp / max(int(labels.sum()), 1))
    def r(values: Any) -> list[float]:  # 5 decimals keep the page's JSON small
        return [round(float(v), 5) for v in values]

    return {
        "roc": {"fpr": r(fpr[keep]), "tpr": r(tpr[keep])},
        "hist": {"edges": r(edges), "pos": np.histogram(scores[labels], edges)[0].tolist(),
                 "neg": np.histogram(scores[~labels], edges)[0].tolist()},
        "pr": {"thresholds": r(thresholds), "precision": r(precision), "recall": r(recall)},
    }


def render(kind: str, curves: dict[str, Any], threshold: float | None = None, title: str = "") -> bytes:
    """One plot as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=100)
    ax = fig.add_subplot()
    if kind == "roc":
        ax.plot(curves["roc"]["fpr"], curves["roc"]["tpr"], lw=2)
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title or "ROC")
    elif kind == "hist":
        edges = np.asarray(curves["hist"]["edges"])
        width = np.diff(edges)
        ax.bar(edges[:-1], curves["hist"]["neg"], width, align="edge", alpha=0.6, label="different")
        ax.bar(edges[:-1], curves["hist"]["pos"], width, align="edge", alpha=0.6, label="same / copy")
        ax.set_xlabel("score (cos+1)/2")
        ax.set_ylabel("pairs")
        ax.set_title(title or "score histogram")
    elif kind == "pr":
        t = curves["pr"]["thresholds"]
        ax.plot(t, curves["pr"]["precision"], label="precision")
        ax.plot(t, curves["pr"]["recall"], label="recall")
        ax.set_xlabel("threshold")
        ax.set_ylim(0, 1.02)
        ax.set_title(title or "precision / recall vs threshold")
    else:
        raise ValueError(f"unknown plot kind {kind!r}; one of {', '.join(PLOT_KINDS)}")
    if threshold is not None and kind in ("hist", "pr"):
        ax.axvline(threshold, c="red", ls=":", label=f"threshold {threshold:.3f}")
    if kind != "roc":
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_plots(out_dir: str | Path, curves: dict[str, Any], threshold: float | None, prefix: str = "",
                title: str = "") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in PLOT_KINDS:
        path = out / f"{prefix}{kind}.png"
        path.write_bytes(render(kind, curves, threshold, f"{title} {kind}".strip()))
        written.append(path)
    return written
