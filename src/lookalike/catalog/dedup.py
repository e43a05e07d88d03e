"""Duplicate clusters over a catalog: a kNN graph from the index, a copy check where the score is unsure,
stars that never chain.

1. **Candidates.** Every stored vector asks the index for its ``neighbours`` nearest vectors (batched
   kNN, so the work grows linearly with the catalog; a range search would return whole dense regions
   of look-alikes) and keeps those with cosine >= the candidate line. Same bytes are always an edge.
2. **Decisions.** A candidate pair at or above the *sure* line is a copy on the score alone; between
   the candidate and sure lines the local-feature check (``lookalike.geometry``: ORB + a RANSAC
   similarity fit + the pixels lining up, mirror tried) decides, with each image's features computed
   once. The check is what keeps other shots of one object, look-alike products and rotated copies
   of *different* photos (whose filled corners look alike to any global descriptor) apart; it also
   accepts any rotation or flip, so a vertical flip, a 90/180/270 degree turn or a 25 degree turn
   with filled corners is a copy whatever the descriptor scored, as long as it reached the
   candidate line.
3. **Stars, not chains.** Connected components of the verified graph would chain (A~B, B~C, A far
   from C). Each component is split into stars: the image with the most verified copies is the
   centre and takes every image verified as its copy; repeat on the rest. So every member of a
   cluster is a verified copy of the cluster's centre; the image to keep is then chosen by the keep
   rule (largest resolution, then bytes, then the oldest id). A cluster whose members all share one
   content hash is the ``exact`` tier; any other is ``near_duplicate``.

Which lines: a copy-detection model (SSCD, ``COPY_DETECTORS``) scores edited copies far above
unrelated photos but other shots of one object in between, so its candidate line is low and its
sure line high (``benchmarks/dedup.py``, ``benchmarks/results/dedup.md``). A similarity model
(EfficientNet) uses its near-duplicate score line as the candidate line and checks everything
below an exact copy's score when ``settings.geometric_check`` is on.
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lookalike.catalog.catalog import Catalog
from lookalike.catalog.metadata import ImageRecord
from lookalike.errors import InvalidValueError, LookalikeError
from lookalike.similarity import normalized_score

KeepRule = Callable[[list[ImageRecord]], ImageRecord]
ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)

# Model-name prefixes of copy-detection descriptors (see the module docstring).
COPY_DETECTORS = ("sscd",)
# The model ``lookalike dedup FOLDER`` builds a new catalog with, when it is installed.
DEDUP_MODEL = "sscd_distilled"


@dataclass(frozen=True)
class CopyLines:
    """Cosine lines of one model for dedup (see the module docstring)."""

    candidate: float  # below: never a copy
    sure: float  # at or above: a copy without the local-feature check
    neighbours: int = 16  # nearest vectors asked per image


# Chosen on the DEV transformed sets (benchmarks/dedup.py, both variants): below 0.35 only strongly
# rotated copies remain; from 0.85 up the score alone is right about as often as the check.
SSCD_LINES = CopyLines(candidate=0.35, sure=0.85, neighbours=10)


def is_copy_detector(model: str) -> bool:
    return model.lower().startswith(COPY_DETECTORS)


def dedup_model(settings) -> str:  # noqa: ANN001 - lookalike.config.Settings
    """``DEDUP_MODEL`` when the model table knows it, else the configured default model."""
    from lookalike.models.registry import resolve_model

    try:
        return resolve_model(DEDUP_MODEL).name
    except LookalikeError:
        return settings.default_model


def keep_largest(members: list[ImageRecord]) -> ImageRecord:
    return max(members, key=lambda r: (r.width * r.height, r.size, -r.id))


@dataclass
class Pair:
    a: int
    b: int
    cosine: float
    score: float
    verdict: str
    checked: bool = False  # decided by the local-feature check (False: by the score, or same bytes)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "cosine": self.cosine, "score": self.score, "verdict": self.verdict,
                "checked": self.checked}


@dataclass
class Cluster:
    cluster_id: int
    tier: str  # "exact" | "near_duplicate"
    keep: int
    members: list[ImageRecord]
    pairs: list[Pair] = field(default_factory=list)
    centre: int = 0  # the image every other member is a verified copy of (the kept one is the largest)

    def to_dict(self) -> dict:
        return {
            "cluster_id": self.cluster_id,
            "tier": self.tier,
            "keep": self.keep,
            "centre": self.centre,
            "members": [{"id": m.id, "path": m.path, "filename": m.filename, "width": m.width, "height": m.height}
                        for m in self.members],
            "pairs": [p.to_dict() for p in self.pairs],
        }


@dataclass
class DuplicateReport:
    catalog: str
    threshold: float  # the candidate line on the score scale (cos+1)/2
    clusters: list[Cluster]
    stats: dict = field(default_factory=dict)  # candidates, sure, checked, confirmed, seconds per stage

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "clusters": [c.to_dict() for c in self.clusters], "stats": self.stats}

    def groups(self) -> dict:
        """``{"exact": [[path, ...]], "near": [[path, ...]]}``, the kept image first in each group."""
        out: dict[str, list[list[str]]] = {"exact": [], "near": []}
        for c in self.clusters:
            ordered = sorted(c.members, key=lambda m: (m.id != c.keep, m.id))
            out["exact" if c.tier == "exact" else "near"].append([m.path or m.filename for m in ordered])
        return out

    def write(self, path: str | Path) -> Path:
        """``.json``: the API's shape; anything else: CSV, one row per member."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=2))
            return path
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["cluster_id", "tier", "id", "path", "width", "height", "keep", "best_score_in_cluster"])
            for cluster in self.clusters:
                best: dict[int, float] = {}
                for pair in cluster.pairs:
                    for end in (pair.a, pair.b):
                        best[end] = max(best.get(end, 0.0), pair.score)
                for m in cluster.members:
                    out.writerow([cluster.cluster_id, cluster.tier, m.id, m.path, m.width, m.height,
                                  int(m.id == cluster.keep), round(best.get(m.id, 0.0), 6)])
        return path


def copy_lines(catalog: Catalog, threshold: float | None, verify: bool) -> CopyLines:
    """The lines for this catalog's model; ``threshold`` (a score) moves the candidate line.

    Without the check (``verify`` False) one line decides: the given threshold, else the copy
    detector's sure line or the similarity model's near-duplicate line.
    """
    given = None if threshold is None else 2.0 * float(threshold) - 1.0
    if is_copy_detector(catalog.model):
        lines = SSCD_LINES
        if not verify:
            line = lines.sure if given is None else given
            return CopyLines(line, line, lines.neighbours)
        if given is None:
            return lines
        return CopyLines(given, max(lines.sure, given), lines.neighbours)
    candidate = 2.0 * float(catalog.thresholds.near_duplicate) - 1.0 if given is None else given
    return CopyLines(candidate, 0.9999 if verify else candidate)


def find_duplicates(catalog: Catalog, threshold: float | None = None, *, keep: KeepRule = keep_largest,
                    batch_size: int = 1024, verify: bool | None = None,
                    progress: ProgressFn | None = None) -> DuplicateReport:
    """Clusters of verified copies (see the module docstring).

    ``threshold``: the candidate line as a score (cos+1)/2 (default: the model's). ``verify``
    (default: ``settings.geometric_check``): run the local-feature check between the candidate
    and sure lines; without it every candidate pair is a copy. ``progress(stage, done, total)``
    is called as the graph is built ("graph") and as pairs are checked ("check").
    """
    import time

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidValueError("threshold is a score in [0, 1]", code="bad_threshold")
    verify = catalog.settings.geometric_check if verify is None else verify
    lines = copy_lines(catalog, threshold, verify)
    started = time.perf_counter()
    ids, edges = _candidates(catalog, lines, batch_size, progress)
    graph_s = time.perf_counter() - started
    records = catalog.meta.get_many({i for pair in edges for i in pair}) if edges else {}
    same_bytes = {(a, b) for a, b in edges if records[a].content_hash == records[b].content_hash}
    for group in catalog.meta.exact_groups():  # same bytes: always copies, whatever the vectors say
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                edges.setdefault((min(a, b), max(a, b)), 1.0)
                same_bytes.add((min(a, b), max(a, b)))
        records.update(catalog.meta.get_many([i for i in group if i not in records]))
    sure = {e for e, cos in edges.items() if cos >= lines.sure or e in same_bytes}
    unsure = [e for e in edges if e not in sure]
    started = time.perf_counter()
    confirmed = _checked(catalog, unsure, records, progress) if unsure else set()
    check_s = time.perf_counter() - started
    copies = {e: edges[e] for e in sure | confirmed}
    clusters = []
    touching: dict[int, list[tuple[int, int]]] = {}  # each copy pair under its smaller id
    for pair in copies:
        touching.setdefault(pair[0], []).append(pair)
    for centre, members in _stars(copies, records, keep):
        inside = set(members)
        kept = keep([records[i] for i in members]).id
        pairs = []
        found = [(e, copies[e]) for i in members for e in touching.get(i, ()) if e[1] in inside]
        for (a, b), cos in sorted(found, key=lambda kv: -kv[1]):
            exact = (a, b) in same_bytes
            pairs.append(Pair(a, b, cos, float(normalized_score(cos)), "exact" if exact else "near_duplicate",
                              checked=(a, b) in confirmed))
        tier = "exact" if len({records[i].content_hash for i in members}) == 1 else "near_duplicate"
        clusters.append(Cluster(0, tier, kept, sorted((records[i] for i in members), key=lambda m: m.id), pairs,
                                centre))
    clusters.sort(key=lambda c: (-len(c.members), c.keep))
    for number, cluster in enumerate(clusters, 1):
        cluster.cluster_id = number
    stats = {"images": len(ids), "candidates": len(edges), "sure": len(sure), "checked": len(unsure),
             "confirmed": len(confirmed), "candidate_cosine": lines.candidate, "sure_cosine": lines.sure,
             "graph_s": round(graph_s, 3), "check_s": round(check_s, 3)}
    line = float(threshold) if threshold is not None else float(normalized_score(lines.candidate))
    return DuplicateReport(catalog.name, line, clusters, stats)


# Above this many vectors a flat (exact) store is not asked n queries over n vectors (quadratic):
# a temporary inverted-file index over the same vectors answers the kNN (benchmarks/dedup.py, scale).
EXACT_KNN_MAX = 8192


def _candidates(catalog: Catalog, lines: CopyLines, batch_size: int,
                progress: ProgressFn | None) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """Every stored id, and the kNN edges (a < b) with cosine >= the candidate line."""
    edges: dict[tuple[int, int], float] = {}
    with catalog._lock:  # a consistent snapshot of the index while we query it
        ids = np.sort(catalog.store.ids())
        known = set(ids.tolist())
        k = min(lines.neighbours + 1, len(ids))
        if k < 2:
            return ids, edges
        search = catalog.store.search
        if getattr(catalog.store, "factory", None) == "Flat" and len(ids) > EXACT_KNN_MAX:
            search = _inverted_file_search(catalog, len(ids))
        done = 0
        for batch_ids, vectors in catalog.store.iter_batches(batch_size):
            for query_id, hits in zip(batch_ids, search(vectors, k)):
                q = int(query_id)
                for hit in hits:
                    if hit.id != q and hit.cosine >= lines.candidate and hit.id in known:
                        key = (min(q, hit.id), max(q, hit.id))
                        edges[key] = max(edges.get(key, -1.0), min(1.0, float(hit.cosine)))
            done += len(batch_ids)
            if progress is not None:
                progress("graph", done, len(ids))
    return ids, edges


def _inverted_file_search(catalog: Catalog, n: int):  # noqa: ANN202 - (queries, k) -> list[list[Hit]]
    """kNN over the catalog's vectors through a temporary IVF index (~2 sqrt(n) lists, 16 probed):
    each query scans a few thousand vectors instead of all n, so the graph grows ~n^1.5, not n^2."""
    import faiss

    from lookalike.catalog.stores.base import Hit

    lists = int(2 * np.sqrt(n))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(catalog.dim), catalog.dim, lists, faiss.METRIC_INNER_PRODUCT)
    all_ids, all_vectors = [], []
    for batch_ids, vectors in catalog.store.iter_batches(4096):
        all_ids.append(np.asarray(batch_ids, dtype=np.int64))
        all_vectors.append(np.ascontiguousarray(vectors, dtype=np.float32))
    stacked = np.concatenate(all_vectors)
    sample = stacked[np.random.default_rng(0).choice(len(stacked), min(len(stacked), 30 * lists), replace=False)]
    index.train(sample)
    index.add_with_ids(stacked, np.concatenate(all_ids))
    index.nprobe = 16

    def search(queries: np.ndarray, k: int) -> list[list[Hit]]:
        scores, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [[Hit(int(i), float(c)) for c, i in zip(row_s, row_i) if i >= 0] for row_s, row_i in zip(scores, found)]

    return search


def _checked(catalog: Catalog, pairs: list[tuple[int, int]], records: dict[int, ImageRecord],
             progress: ProgressFn | None) -> set[tuple[int, int]]:
    """The pairs the local-feature check calls copies (each image's features computed once, in threads)."""
    from lookalike.geometry import DEDUP_FEATURES, is_edited_copy, load_features
    from lookalike.imaging import ImageLimits

    limits = ImageLimits.from_settings(catalog.settings)
    needed = sorted({i for pair in pairs for i in pair})

    def features_of(image_id: int):  # noqa: ANN202
        try:
            return load_features(catalog.original_path(records[image_id]), limits, **DEDUP_FEATURES)
        except LookalikeError:  # the file is gone or unreadable: no evidence either way
            return None

    workers = max(1, min(8, os.cpu_count() or 1))
    total = len(needed) + len(pairs)
    with ThreadPoolExecutor(workers) as pool:  # OpenCV and Pillow release the GIL
        features = {}
        for done, (image_id, found) in enumerate(zip(needed, pool.map(features_of, needed)), 1):
            features[image_id] = found
            if progress is not None and done % 64 == 0:
                progress("check", done, total)

        def decide(pair: tuple[int, int]) -> bool:
            fa, fb = features[pair[0]], features[pair[1]]
            return fa is not None and fb is not None and is_edited_copy(fa, fb)

        confirmed = set()
        for done, (pair, copy) in enumerate(zip(pairs, pool.map(decide, pairs)), len(needed) + 1):
            if copy:
                confirmed.add(pair)
            if progress is not None and (done % 256 == 0 or done == total):
                progress("check", done, total)
    return confirmed


def _stars(copies: dict[tuple[int, int], float], records: dict[int, ImageRecord], keep: KeepRule):
    """Split the verified graph into (centre, members) stars of size >= 2 (see the module docstring).

    The image with the most verified copies still unassigned is the next centre (ties: the keep
    rule); a heap with lazily refreshed degrees keeps this O(E log E).
    """
    import heapq

    neighbours: dict[int, set[int]] = {}
    for a, b in copies:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    left = set(neighbours)
    rank = {i: keep_rank(records[i]) if keep is keep_largest else (0,) for i in left}
    degree = {i: len(neighbours[i]) for i in left}
    heap = [(-degree[i], _negated(rank[i]), i) for i in left]
    heapq.heapify(heap)
    while heap:
        negative_degree, _, centre = heapq.heappop(heap)
        if centre not in left:
            continue
        if -negative_degree != degree[centre]:  # stale: members were taken since it was pushed
            heapq.heappush(heap, (-degree[centre], _negated(rank[centre]), centre))
            continue
        members = (neighbours[centre] & left) | {centre}
        left -= members
        for member in members:
            for other in neighbours[member]:
                if other in left:
                    degree[other] -= 1
        if len(members) >= 2:
            yield centre, sorted(members)


def _negated(rank: tuple) -> tuple:
    return tuple(-x for x in rank)


def keep_rank(record: ImageRecord) -> tuple:
    return (record.width * record.height, record.size, -record.id)
