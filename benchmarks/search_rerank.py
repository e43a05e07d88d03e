"""Search re-ranking and tier checks from stored local features: recall and cost per variant.

Catalog search re-ranks the top ``search_rerank_top`` (50) hits by cosine + capped inliers of a
fitted similarity transform (``catalog.search.rerank_head``) and re-decides the tiers of the
returned hits (``geometry.check_copy``). This measures, on the DEV data, in one run:

- (a) DEV view groups (leave-one-out over the 140 group photos, the order search returns):
  Recall@1 / Recall@4 / mAP of each re-rank variant, and its cost per query as search runs it
  (keep the top 10: candidates that cannot reach them are not fitted), features in memory;
- (b) DEV pairs whose score leaves the tier open: the search's tier check (stored features, the
  mirror on the query side, 300 corners; mirror and second look only at near-duplicate scores)
  against ``/v1/compare``'s full check (``match_features``, 1000 corners): agreement, F1, cost.

Variants: corners matched (query x catalog image), matcher, inlier cap. ``before`` is the
re-rank as it shipped before stored features: 1000 x 1000 corners, one OpenCV brute-force
matcher per hit, cap 100 (its features were also decoded and found per hit, not counted here).

Run: ``nice -n 15 python benchmarks/search_rerank.py`` (writes ``benchmarks/results/search_rerank.md``).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEV_DATA, bench_settings, markdown_table, percentile, write_result

import lookalike.geometry as geometry
from lookalike.catalog.search import rerank_head
from lookalike.quality.evaluation import group_metrics_from_similarity, load_groups
from lookalike.similarity import normalized_score

HEAD = 50
KEEP = 10
SHIPPED = (geometry.RERANK_QUERY_KEYPOINTS, geometry.RERANK_KEYPOINTS, geometry.RERANK_INLIER_CAP)
VARIANTS = [  # (name, query corners, catalog corners, cap, matcher)
    ("before: 1000 x 1000, OpenCV per hit, cap 100", 1000, 1000, 100, "opencv"),
    ("1000 x 1000, FAISS reverse, cap 100", 1000, 1000, 100, "faiss"),
    ("300 x 300, OpenCV per hit, cap 30", 300, 300, 30, "opencv"),
    ("300 x 300, FAISS reverse, cap 30", 300, 300, 30, "faiss"),
    (f"{SHIPPED[0]} x {SHIPPED[1]}, FAISS reverse, cap {SHIPPED[2]} (shipped)", *SHIPPED, "faiss"),
    ("400 x 300, FAISS reverse, cap 50", 400, 300, 50, "faiss"),
    ("200 x 200, FAISS reverse, cap 20", 200, 200, 20, "faiss"),
]


def groups_part(embedder) -> list[list]:  # noqa: ANN001
    groups = load_groups(DEV_DATA / "groups.csv")
    images = [embedder.load(p) for p in groups.paths]
    vectors = embedder.encode_decoded(images)
    similarity = normalized_score(vectors @ vectors.T)
    stored_fine = geometry.STORED_FINE
    geometry.STORED_FINE = 1000  # keep every corner; each variant takes its strongest N (what storing N keeps)
    try:
        stored = [geometry.unpack_features(geometry.features_for(image)) for image in images]
    finally:
        geometry.STORED_FINE = stored_fine
    queries = [geometry.QueryFeatures(image) for image in images]
    plain = group_metrics_from_similarity(similarity, groups.groups)
    rows = [["embedding order (no re-rank)", f"{plain.recall_at_1:.3f}", f"{plain.recall_at_4:.3f}",
             f"{plain.map:.3f}", "-", "-"]]
    saved = (geometry.RERANK_QUERY_KEYPOINTS, geometry.RERANK_KEYPOINTS, geometry.RERANK_INLIER_CAP,
             geometry.reverse_ratio_matches)
    try:
        for name, q_corners, c_corners, cap, matcher in VARIANTS:
            geometry.RERANK_QUERY_KEYPOINTS, geometry.RERANK_KEYPOINTS, geometry.RERANK_INLIER_CAP = q_corners, c_corners, cap
            geometry.reverse_ratio_matches = saved[3] if matcher == "faiss" else geometry.ratio_matches
            out = similarity.copy()
            costs = []
            for q in range(len(images)):
                row = similarity[q].copy()
                row[q] = -np.inf
                head = np.argsort(-row, kind="stable")[:HEAD]
                cosines = [2.0 * similarity[q, j] - 1.0 for j in head]
                candidates = [stored[j] for j in head]
                ranked = rerank_head(queries[q], candidates, cosines, keep=len(head))  # the full order, for mAP
                for i, j in enumerate(head):
                    out[q, j] = normalized_score(ranked.keys[i], clip=False)
                started = time.perf_counter()
                pruned = rerank_head(queries[q], candidates, cosines, keep=KEEP)  # what search runs
                costs.append((time.perf_counter() - started) * 1000.0)
                assert pruned.order[:KEEP] == ranked.order[:KEEP]
            m = group_metrics_from_similarity(out, groups.groups)
            costs.sort()
            rows.append([name, f"{m.recall_at_1:.3f}", f"{m.recall_at_4:.3f}", f"{m.map:.3f}",
                         f"{percentile(costs, 50):.1f}", f"{percentile(costs, 95):.1f}"])
            print(rows[-1], flush=True)
    finally:
        (geometry.RERANK_QUERY_KEYPOINTS, geometry.RERANK_KEYPOINTS, geometry.RERANK_INLIER_CAP,
         geometry.reverse_ratio_matches) = saved
    return rows


def pairs_part(embedder, thresholds) -> list[list]:  # noqa: ANN001
    rows = list(csv.DictReader((DEV_DATA / "pairs.csv").open()))
    paths = sorted({r[k] for r in rows for k in ("path_a", "path_b")})
    images = {p: embedder.load(DEV_DATA / p) for p in paths}
    vectors = dict(zip(paths, embedder.encode_decoded([images[p] for p in paths])))
    full: dict[str, object] = {}
    query: dict[str, object] = {}
    stored: dict[str, object] = {}
    decisions: dict[str, list[bool]] = {"compare": [], "search": []}
    costs: dict[str, list[float]] = {"compare": [], "search": []}
    labels = []
    for r in rows:
        a, b = r["path_a"], r["path_b"]
        score = float(normalized_score(float(vectors[a] @ vectors[b])))
        tier = thresholds.tier(score)
        if not geometry.needs_check(score, thresholds, tier):
            continue
        labels.append(int(r["label"]))
        for name in (a, b):
            if name not in full:
                full[name] = geometry.local_features(images[name])
        query.setdefault(a, geometry.QueryFeatures(images[a]))
        stored.setdefault(b, geometry.unpack_features(geometry.features_for(images[b])))
        started = time.perf_counter()
        verdict = geometry.decide_tier(score, thresholds, geometry.match_features(full[a], full[b]))
        costs["compare"].append((time.perf_counter() - started) * 1000.0)
        decisions["compare"].append(thresholds.is_match(score, verdict))
        started = time.perf_counter()
        evidence = geometry.check_copy(query[a], stored[b], other_tries=score >= thresholds.near_duplicate)
        verdict = geometry.decide_tier(score, thresholds, evidence)
        costs["search"].append((time.perf_counter() - started) * 1000.0)
        decisions["search"].append(thresholds.is_match(score, verdict))
    labels_arr = np.array(labels)
    reference = np.array(decisions["compare"])
    out = []
    for name, label in (("compare", "`/v1/compare`'s check (match_features, 1000 corners, every try)"),
                        ("search", "search's check (stored features, 300 corners, tries gated)")):
        got = np.array(decisions[name])
        tp, fp = int((got & (labels_arr == 1)).sum()), int((got & (labels_arr == 0)).sum())
        fn = int((~got & (labels_arr == 1)).sum())
        ordered = sorted(costs[name])
        out.append([label, len(got), f"{np.mean(got == reference):.3f}", f"{2 * tp / max(2 * tp + fp + fn, 1):.3f}",
                    f"{percentile(ordered, 50):.2f}", f"{percentile(ordered, 95):.2f}"])
    return out


def main() -> int:
    from lookalike.embed import create_embedder
    from lookalike.similarity import thresholds_for

    settings = bench_settings()
    embedder = create_embedder(None, settings=settings)
    thresholds = thresholds_for(embedder.model_name, embedder.input_size, settings)
    group_rows = groups_part(embedder)
    pair_rows = pairs_part(embedder, thresholds)
    body = "\n".join([
        f"## (a) Re-rank variants on the DEV view groups ({HEAD} top hits by cosine re-ranked)",
        "",
        "Recall and mAP over the order search returns (`rerank_head`, each image its own query, leave-one-out); "
        f"cost: one query's re-rank as search runs it (the top {KEEP} kept), stored features in memory, "
        "the query's features made once (not counted), in ms on this machine in this run.",
        "",
        markdown_table(["variant", "Recall@1", "Recall@4", "mAP", "re-rank p50 ms", "p95 ms"], group_rows),
        "",
        "## (b) Tier check on the DEV pairs the score leaves open",
        "",
        "Is-match decisions (near_duplicate or above) of each check; agreement is with compare's; "
        "cost per pair, features made once per image (not counted).",
        "",
        markdown_table(["check", "pairs", "agreement with compare", "F1 vs labels", "p50 ms", "p95 ms"], pair_rows),
    ])
    write_result("search_rerank", "Search re-rank and tier check from stored features: recall and cost", body,
                 "nice -n 15 python benchmarks/search_rerank.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
