"""How good is a similarity score? Metrics on labelled pairs and on view groups.

Pure functions on scores and embeddings (no model here) plus loaders for the two CSV formats of
the evaluation sets, so the CLI, the benchmarks and the tests measure the same way:

- pairs (``path_a,path_b,label,kind``; label 1 = same photo / edited copy): ROC-AUC, average
  precision, the best-F1 threshold, precision/recall/F1 at a given threshold, and the same per
  ``kind`` (positive kinds: recall and AUC against all negatives; negative kinds: rejection rate).
- groups (``path,group``; several shots of one object): leave-one-out retrieval Recall@1,
  Recall@4 (a same-group image in the top 4), mAP, and the UKBench N-S score (same-group images
  among the top 4 of a ranking that includes the query itself, as in Nister & Stewenius 2006).

Paths in the CSVs are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.similarity import normalized_score


class EvalDataError(LookalikeError):
    status = 422
    code = "bad_eval_data"


# ----------------------------------------------------------------------------------- loaders


@dataclass(frozen=True)
class PairSet:
    path_a: list[Path]
    path_b: list[Path]
    labels: np.ndarray  # int 0/1
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def unique_paths(self) -> list[Path]:
        return list(dict.fromkeys([*self.path_a, *self.path_b]))


@dataclass(frozen=True)
class GroupSet:
    paths: list[Path]
    groups: list[str]


def _rows(csv_path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise EvalDataError(f"{csv_path} does not exist")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise EvalDataError(f"{csv_path}: missing column(s) {', '.join(missing)}; need {', '.join(required)}")
        rows = list(reader)
    if not rows:
        raise EvalDataError(f"{csv_path} has no rows")
    return rows


def load_pairs(csv_path: str | Path) -> PairSet:
    """``path_a,path_b,label[,kind]``; a missing kind reads as ``pos``/``neg`` by label."""
    csv_path = Path(csv_path)
    root = csv_path.parent
    rows = _rows(csv_path, ("path_a", "path_b", "label"))
    labels = []
    for i, row in enumerate(rows, start=2):
        try:
            label = int(float(row["label"]))
        except ValueError:
            raise EvalDataError(f"{csv_path}:{i}: label must be 0 or 1, got {row['label']!r}") from None
        if label not in (0, 1):
            raise EvalDataError(f"{csv_path}:{i}: label must be 0 or 1, got {label}")
        labels.append(label)
    kinds = [row.get("kind") or ("pos" if lab else "neg") for row, lab in zip(rows, labels)]
    return PairSet(
        [root / r["path_a"] for r in rows], [root / r["path_b"] for r in rows], np.asarray(labels, dtype=np.int64), kinds
    )


def load_groups(csv_path: str | Path) -> GroupSet:
    csv_path = Path(csv_path)
    rows = _rows(csv_path, ("path", "group"))
    return GroupSet([csv_path.parent / r["path"] for r in rows], [r["group"] for r in rows])


# ----------------------------------------------------------------------------------- pairs


@dataclass
class KindMetrics:
    kind: str
    label: int
    n: int
    mean_score: float
    correct_at_threshold: float  # recall for a positive kind, rejection rate for a negative kind
    roc_auc: float | None = None  # positive kinds: this kind's positives against all negatives


@dataclass
class PairMetrics:
    n: int
    n_pos: int
    roc_auc: float
    average_precision: float
    best_f1: float
    best_threshold: float
    threshold: float
    precision_at_threshold: float
    recall_at_threshold: float
    f1_at_threshold: float
    per_kind: list[KindMetrics] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """The keys ``lookalike eval pairs --json`` prints, exactly."""
        return {
            "roc_auc": self.roc_auc,
            "average_precision": self.average_precision,
            "best_f1": self.best_f1,
            "best_threshold": self.best_threshold,
            "f1_at_threshold": self.f1_at_threshold,
            "threshold": self.threshold,
        }


def prf_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Precision, recall, F1 of the rule ``score >= threshold``."""
    predicted = np.asarray(scores) >= threshold
    labels = np.asarray(labels).astype(bool)
    tp = float(np.sum(predicted & labels))
    fp = float(np.sum(predicted & ~labels))
    fn = float(np.sum(~predicted & labels))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(best F1, threshold): the threshold is the midpoint between the deciding score and the next
    lower one, so a slightly different photo on either side does not flip the verdict."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    n_pos = max(int(y.sum()), 1)
    # only cut where the score changes (ties go together)
    last = np.r_[s[1:] != s[:-1], True]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    f1 = np.where(last, f1, -1.0)
    i = int(np.argmax(f1))
    below = s[i + 1] if i + 1 < len(s) else s[i] - 1e-3
    return float(f1[i]), float((s[i] + below) / 2.0)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC of scores against 0/1 labels (NaN when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    if len(set(np.asarray(labels).tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def pair_metrics(scores: Sequence[float], labels: Sequence[int], threshold: float,
                 kinds: Sequence[str] | None = None, decisions: Sequence[bool] | None = None) -> PairMetrics:
    """All pair metrics for one score per pair; ``threshold`` is the one in force (shipped or configured).

    ``decisions``: what the service answers per pair (``service_decisions``: the score line plus the
    geometric check); when given, P/R/F1 at the threshold and the per-kind shares judge those
    instead of ``score >= threshold``. AUC, AP and best F1 always rank the score.
    """
    from sklearn.metrics import average_precision_score

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(scores) != len(labels) or len(scores) == 0:
        raise EvalDataError("need one score per labelled pair, and at least one pair")
    has_both = len(set(labels.tolist())) == 2
    best_f1, best_t = best_f1_threshold(scores, labels)
    predicted_all = scores >= threshold if decisions is None else np.asarray(decisions, dtype=bool)
    p, r, f1 = prf_at(predicted_all.astype(np.float64), labels, 0.5)
    result = PairMetrics(
        n=len(labels), n_pos=int(labels.sum()), roc_auc=roc_auc(scores, labels),
        average_precision=float(average_precision_score(labels, scores)) if has_both else float("nan"),
        best_f1=best_f1, best_threshold=best_t, threshold=float(threshold),
        precision_at_threshold=p, recall_at_threshold=r, f1_at_threshold=f1,
    )
    if kinds is not None:
        kinds_arr = np.asarray(kinds)
        negatives = labels == 0
        for kind in sorted(set(kinds_arr.tolist())):
            mask = kinds_arr == kind
            label = int(round(labels[mask].mean()))
            correct = float(np.mean(predicted_all[mask] == labels[mask].astype(bool)))
            auc = None
            if label == 1 and negatives.any():
                sel = mask | negatives
                auc = roc_auc(scores[sel], labels[sel])
            result.per_kind.append(KindMetrics(kind, label, int(mask.sum()), float(scores[mask].mean()), correct, auc))
    return result


def features_by_path(limits=None, decode_side: int | None = None):  # noqa: ANN001, ANN201 - (Path) -> LocalFeatures
    """Each image's local features for the geometric check, made once per path: decoded at
    ``decode_side`` (the embedder's reduced decode, which compare checks) or, without it, at the
    check's own ``geometry.MAX_SIDE``."""
    from lookalike.geometry import MAX_SIDE, local_features
    from lookalike.imaging import DEFAULT_LIMITS, load_image

    features: dict[str, object] = {}

    def features_of(path: Path):  # noqa: ANN202 - geometry.LocalFeatures
        key = str(path)
        if key not in features:
            image = load_image(path, limits or DEFAULT_LIMITS, draft_side=decode_side or MAX_SIDE)
            features[key] = local_features(image)
        return features[key]

    return features_of


def service_decisions(path_a: Sequence[Path], path_b: Sequence[Path], scores: Sequence[float], thresholds,
                      limits=None, decode_side: int | None = None, *,  # noqa: ANN001
                      copy_scores: Sequence[float] | None = None, copy_lines=None,  # noqa: ANN001
                      geometry: bool = True) -> np.ndarray:
    """Is each pair a match as ``/v1/compare`` answers it (``is_match``).

    Without ``copy_scores``: the score line, with the geometric check re-deciding pairs whose score is
    near or above the ``similar`` line. With a copy detector's ``copy_scores`` and ``copy_lines``
    (``similarity.CopyLines``): a copy tier as ``similarity.copy_tier`` decides it, the check
    (``comparison.copy_check``) only in the copy band; ``geometry=False``: no check (as compare without it).

    ``decode_side``: the embedder's reduced decode (``preprocessing.decode_side``), the image compare
    checks, so eval judges exactly what compare answers (None: decode at the check's own size)."""
    from lookalike.comparison import copy_check
    from lookalike.geometry import decide_tier, match_features, needs_check
    from lookalike.similarity import COPY_TIERS, copy_tier

    features_of = features_by_path(limits, decode_side)
    out = []
    for i, (a, b, score) in enumerate(zip(path_a, path_b, scores)):
        if copy_scores is not None:
            check = (lambda a=a, b=b: copy_check(match_features(features_of(a), features_of(b)))) if geometry else None
            tier, _ = copy_tier(float(score), float(copy_scores[i]), thresholds, copy_lines, check=check)
            out.append(tier in COPY_TIERS)
            continue
        tier = thresholds.tier(float(score))
        if needs_check(float(score), thresholds, tier):
            tier = decide_tier(float(score), thresholds, match_features(features_of(a), features_of(b)))
        out.append(thresholds.is_match(float(score), tier))
    return np.asarray(out, dtype=bool)


# ----------------------------------------------------------------------------------- groups


@dataclass
class GroupMetrics:
    n: int
    n_groups: int
    recall_at_1: float
    recall_at_4: float
    map: float
    ns_score: float
    per_group: dict[str, float] = field(default_factory=dict)  # Recall@1 per group

    def summary(self) -> dict[str, float]:
        """The keys ``lookalike eval groups --json`` prints, exactly."""
        return {"recall_at_1": self.recall_at_1, "recall_at_4": self.recall_at_4, "map": self.map,
                "ns_score": self.ns_score}


def group_metrics_from_similarity(similarity: np.ndarray, groups: Sequence[str]) -> GroupMetrics:
    """Leave-one-out retrieval from an (n, n) similarity matrix (higher = more alike)."""
    sim = np.array(similarity, dtype=np.float64)
    groups_arr = np.asarray(groups)
    n = len(groups_arr)
    if sim.shape != (n, n) or n < 2:
        raise EvalDataError("need an (n, n) similarity matrix for n >= 2 images")
    np.fill_diagonal(sim, -np.inf)
    r1, r4, aps, ns = [], [], [], []
    per_group: dict[str, list[float]] = {}
    for q in range(n):
        relevant = groups_arr == groups_arr[q]
        relevant[q] = False
        if not relevant.any():
            continue  # a singleton group has nothing to find
        order = np.argsort(-sim[q], kind="stable")[: n - 1]  # the query itself ranks last (-inf)
        hits = relevant[order]
        r1.append(float(hits[0]))
        r4.append(float(hits[:4].any()))
        ranks = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
        ns.append(1.0 + float(hits[:3].sum()))  # the query is its own first result in UKBench scoring
        per_group.setdefault(str(groups_arr[q]), []).append(float(hits[0]))
    if not r1:
        raise EvalDataError("no group has two or more images")
    return GroupMetrics(
        n=n, n_groups=len(set(groups_arr.tolist())), recall_at_1=float(np.mean(r1)), recall_at_4=float(np.mean(r4)),
        map=float(np.mean(aps)), ns_score=float(np.mean(ns)),
        per_group={g: float(np.mean(v)) for g, v in sorted(per_group.items())},
    )


def rerank_similarity(similarity: np.ndarray, paths: Sequence[Path], top: int, limits=None,  # noqa: ANN001
                      decode_side: int | None = None) -> np.ndarray:
    """Scores (on the (cos+1)/2 scale) ordered exactly as catalog search orders them: each row's
    ``top`` hits re-keyed by ``catalog.search.rerank_head`` (cosine + capped inliers of the stored
    local features against the query's). Each image is decoded once, as the embedder decodes it
    (``decode_side``), for both its query features and its stored ones."""
    from lookalike.catalog.search import rerank_head
    from lookalike.geometry import QueryFeatures, features_for, unpack_features
    from lookalike.imaging import DEFAULT_LIMITS, load_image

    sim = np.array(similarity, dtype=np.float64)
    if top <= 0:
        return sim
    queries, stored = [], []
    for path in paths:
        image = load_image(path, limits or DEFAULT_LIMITS, draft_side=decode_side)
        queries.append(QueryFeatures(image))
        stored.append(unpack_features(features_for(image)))
    out = sim.copy()
    for q in range(len(paths)):
        row = sim[q].copy()
        row[q] = -np.inf
        head = np.argsort(-row, kind="stable")[:top]
        cosines = [2.0 * sim[q, j] - 1.0 for j in head]
        ranked = rerank_head(queries[q], [stored[j] for j in head], cosines, keep=len(head))
        for i, j in enumerate(head):
            out[q, j] = normalized_score(ranked.keys[i], clip=False)  # keys pass 1: keep their order
    return out


def group_metrics(embeddings: np.ndarray, groups: Sequence[str]) -> GroupMetrics:
    """Retrieval metrics for L2-normalized embeddings (cosine ranking)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    return group_metrics_from_similarity(emb @ emb.T, groups)


# ----------------------------------------------------------------------------------- scoring


def embed_paths(embedder, paths: Sequence[Path], chunk: int = 64) -> dict[str, np.ndarray]:
    """Each distinct path embedded once (an eval set reuses originals in many pairs)."""
    unique = list(dict.fromkeys(str(p) for p in paths))
    vectors: dict[str, np.ndarray] = {}
    for i in range(0, len(unique), chunk):
        part = unique[i : i + chunk]
        vectors.update(zip(part, embedder.encode_decoded([embedder.load(p) for p in part])))
    return vectors


def cosine_pair_scores(vectors: dict[str, np.ndarray], path_a: Sequence[Path], path_b: Sequence[Path]) -> np.ndarray:
    """(cos+1)/2 of each pair, from L2-normalized vectors keyed by path."""
    va = np.stack([vectors[str(p)] for p in path_a]).astype(np.float64)
    vb = np.stack([vectors[str(p)] for p in path_b]).astype(np.float64)
    return normalized_score(np.sum(va * vb, axis=1))
