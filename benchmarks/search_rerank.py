"""Search re-ranking and tier checks from stored local features: recall and cost per variant.

Catalog search re-ranks the top ``search_rerank_top`` (50) hits by cosine + capped inliers of a
fitted similarity transform (``catalog.search.rerank_head``) and re-decides the tiers of the
returned hits (``geometry.check_copy``). This measures, on the DEV data, in one run:

- (a) DEV view groups (leave-one-out over the 140 group photos, the order search returns):
  Recall@1 / Recall@4 / mAP of each re-rank variant, and its cost per query as search runs it
  (keep the top 10: candidates that cannot reach them are not fitted), features in memory;
- (b) DEV pairs whose score leaves the tier open: the search's tier check (stored features, the
  mirror on the query side, 300 corners; mirror and second look only at near-duplicate scores,
  the second look only where the fine evidence leaves the copy open; a catalog image's coarse
  corners made on its first second look, counted)
  against ``/v1/compare``'s full check (``match_features``, 1000 corners): agreement, F1, cost.

Variants: corners matched (query x catalog image) and how they were found (ORB asked for N, as
stored now, or the strongest N of 1000, as stored before), matcher (``Hamming tables``: the shipped
``reverse_ratio_matches``; ``FAISS k-NN``: the previous round's one ``IndexBinaryFlat`` search),
inlier cap, hits re-ranked. ``before`` is the re-rank as it shipped before stored features: 1000 x
1000 corners, one OpenCV brute-force matcher per hit, cap 100.

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
from lookalike.catalog.search import rerank_head, verified_tier
from lookalike.quality.evaluation import group_metrics_from_similarity, load_groups
from lookalike.similarity import normalized_score

HEAD = 50
KEEP = 10
SHIPPED = (geometry.RERANK_QUERY_KEYPOINTS, geometry.RERANK_KEYPOINTS, geometry.RERANK_INLIER_CAP)
# (name, query corners, catalog corners, cap, matcher, hits re-ranked, corners: "asked" = ORB asked
# for N (what is stored now), "of 1000" = the strongest N of ORB's 1000 (what was stored before))
VARIANTS = [
    ("before: 1000 x 1000, OpenCV per hit, cap 100", 1000, 1000, 100, "opencv", 50, "of 1000"),
    ("1000 x 1000, FAISS k-NN, cap 100", 1000, 1000, 100, "faiss-knn", 50, "of 1000"),
    ("400 x 300 of 1000, FAISS k-NN, cap 35 (previous round)", 400, 300, 35, "faiss-knn", 50, "of 1000"),
    ("400 x 300 of 1000, Hamming tables, cap 35", 400, 300, 35, "tables", 50, "of 1000"),
    ("400 x 300 asked, Hamming tables, cap 35", 400, 300, 35, "tables", 50, "asked"),
    ("400 x 300 asked, Hamming tables, cap 45", 400, 300, 45, "tables", 50, "asked"),
    ("500 x 300 asked, Hamming tables, cap 40", 500, 300, 40, "tables", 50, "asked"),
    (f"{SHIPPED[0]} x {SHIPPED[1]} asked (catalog FAST threshold {geometry.STORED_FAST_THRESHOLD}), Hamming tables, "
     f"cap {SHIPPED[2]} (shipped)", *SHIPPED, "tables", 50, ("asked", f"asked, threshold {geometry.STORED_FAST_THRESHOLD}")),
    ("500 x 300 asked (catalog FAST threshold 40), Hamming tables, cap 40", 500, 300, 40, "tables", 50,
     ("asked", "asked, threshold 40")),
    ("500 x 300 asked, Hamming tables, cap 30", 500, 300, 30, "tables", 50, "asked"),
    ("500 x 300 asked, Hamming tables, cap 40, top 30 re-ranked", 500, 300, 40, "tables", 30, "asked"),
    ("400 x 200 asked, Hamming tables, cap 25", 400, 200, 25, "tables", 50, "asked"),
]


def faiss_knn_matches(query, candidates):  # noqa: ANN001, ANN201 - the previous round's matcher, for its cost
    """Ratio-tested reverse matches from one FAISS ``IndexBinaryFlat`` k-NN search (k = 2)."""
    import faiss

    empty = geometry.Matches(np.zeros(0, np.int64), np.zeros(0, np.int64))
    sizes = [len(c) for c in candidates]
    if len(query) < 2 or sum(sizes) == 0:
        return [empty for _ in candidates]
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(query.descriptors))
    faiss.omp_set_num_threads(1)
    distances, nearest = index.search(np.concatenate([c.descriptors for c in candidates if len(c)]), 2)
    good = (distances[:, 0] < geometry.RATIO_TEST * distances[:, 1]) & (nearest[:, 1] >= 0)
    out, start = [], 0
    for n in sizes:
        rows = np.flatnonzero(good[start : start + n])
        out.append(geometry.Matches(nearest[start + rows, 0].astype(np.int64), rows.astype(np.int64)))
        start += n
    return out


def _keypoints(gray: np.ndarray, n: int, detect: str) -> geometry.KeypointSet:
    """``detect``: "asked" (ORB asked for n), "asked, threshold T" (and FAST threshold T, 10 if not
    given) or "of N" (the strongest n of ORB's N)."""
    if detect.startswith("of "):
        return geometry._orb_set(gray, int(detect.split()[1])).head(n)
    return geometry._orb_set(gray, n, int(detect.rsplit(" ", 1)[1]) if "threshold" in detect else 10)


def groups_part(embedder) -> list[list]:  # noqa: ANN001
    groups = load_groups(DEV_DATA / "groups.csv")
    images = [embedder.load(p) for p in groups.paths]
    vectors = embedder.encode_decoded(images)
    similarity = normalized_score(vectors @ vectors.T)
    grays = [geometry._gray(image) for image in images]
    base = [geometry.unpack_features(geometry.features_for(image)) for image in images]
    queries = [geometry.QueryFeatures(image) for image in images]
    plain = group_metrics_from_similarity(similarity, groups.groups)
    rows = [["embedding order (no re-rank)", f"{plain.recall_at_1:.3f}", f"{plain.recall_at_4:.3f}",
             f"{plain.map:.3f}", "-", "-"]]
    saved = (geometry.RERANK_QUERY_KEYPOINTS, geometry.RERANK_KEYPOINTS, geometry.RERANK_INLIER_CAP,
             geometry.reverse_ratio_matches)
    matchers = {"tables": saved[3], "faiss-knn": faiss_knn_matches, "opencv": geometry.ratio_matches}
    try:
        for name, q_corners, c_corners, cap, matcher, head_size, detect in VARIANTS:
            geometry.RERANK_QUERY_KEYPOINTS, geometry.RERANK_KEYPOINTS, geometry.RERANK_INLIER_CAP = q_corners, c_corners, cap
            geometry.reverse_ratio_matches = matchers[matcher]
            q_detect, c_detect = detect if isinstance(detect, tuple) else (detect, detect)
            stored = [geometry.StoredFeatures(_keypoints(g, c_corners, c_detect), None, f.gray_jpeg)
                      for g, f in zip(grays, base)]
            for query, gray in zip(queries, grays):
                query.fine = _keypoints(gray, q_corners, q_detect)
            out = similarity.copy()
            costs = []
            for q in range(len(images)):
                row = similarity[q].copy()
                row[q] = -np.inf
                head = np.argsort(-row, kind="stable")[:head_size]
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
        verdict = verified_tier(query[a], stored[b], score, thresholds)
        costs["search"].append((time.perf_counter() - started) * 1000.0)
        decisions["search"].append(thresholds.is_match(score, verdict))
    labels_arr = np.array(labels)
    reference = np.array(decisions["compare"])
    out = []
    for name, label in (("compare", "`/v1/compare`'s check (match_features, 1000 corners, every try)"),
                        ("search", "search's check (`verified_tier`: stored features, 300 corners, tries gated)")):
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
        "cost per pair, features made once per image (not counted) but for a catalog image's coarse corners, "
        "which search makes from the stored grey on the first second look that needs them (counted there).",
        "",
        markdown_table(["check", "pairs", "agreement with compare", "F1 vs labels", "p50 ms", "p95 ms"], pair_rows),
    ])
    write_result("search_rerank", "Search re-rank and tier check from stored features: recall and cost", body,
                 "nice -n 15 python benchmarks/search_rerank.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
