"""Duplicate clusters over a catalog: a kNN graph from the index, a copy check on stored local features,
stars that never chain.

1. **Candidates.** Every stored vector asks the index for its ``neighbours`` nearest vectors (batched
   kNN, so the work grows linearly with the catalog; a range search would return whole dense regions
   of look-alikes) and keeps those with cosine >= the candidate line. Same bytes are always an edge.
2. **Decisions.** A candidate pair is a copy when the local-feature check says so (only identical
   vectors and same bytes skip it: on the DEV sets even cosine 0.95+ holds head-on views of two
   different cups). The check runs on the features the catalog stores for search
   (``catalog.search.stored_features``: ORB corners at 384 px and a half-size CLAHE grey), computed
   once for catalogs indexed without them: each image's corners are matched against all its
   partners' in one FAISS search (``geometry.reverse_ratio_matches``), a similarity (then, for
   images of other proportions, an affine) transform is fitted, and the fitted pixels must line up
   *everywhere*: over the whole overlap and in the worst block of a 4 x 4 grid (``COPY_NCC``,
   ``COPY_WORST_BLOCK``). Mirrors are tried in a second round, only where they could still join
   two groups (``MIRROR_COSINE``). Finally a confirmed pair that lines up clearly worse than both
   its images' best pairs is dropped (``OWN_COPY_MARGIN``): a look-alike product lines up almost
   like a copy, except where the labels differ, while each image's own copies line up everywhere.
   The check accepts any rotation or flip, so a vertical flip, a 90/180/270 degree turn or a 25
   degree turn with filled corners is a copy whatever the descriptor scored, as long as it reached
   the candidate line.
3. **Stars, not chains.** Connected components of the verified graph would chain (A~B, B~C, A far
   from C). Each component is split into stars: the image with the most verified copies is the
   centre and takes every image verified as its copy; repeat on the rest. So every member of a
   cluster is a verified copy of the cluster's centre; the image to keep is then chosen by the keep
   rule (largest resolution, then bytes, then the oldest id). A cluster whose members all share one
   content hash is the ``exact`` tier; any other is ``near_duplicate``.

Which lines: a copy-detection model (SSCD, ``COPY_DETECTORS``) scores edited copies far above
unrelated photos but other shots of one object in between, so its candidate line is low
(``benchmarks/dedup.py``, ``benchmarks/dedup_lines.py``, ``benchmarks/results/dedup.md``). A
similarity model (EfficientNet) uses its near-duplicate score line as the candidate line and checks
everything below an exact copy's score when ``settings.geometric_check`` is on.
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
class DedupLines:
    """Cosine lines of one model for dedup (see the module docstring)."""

    candidate: float  # below: never a copy
    sure: float  # at or above: a copy without the local-feature check
    neighbours: int = 16  # nearest vectors asked per image


# Chosen on the DEV transformed sets (benchmarks/dedup_lines.py, both variants): below 0.35 only strongly
# rotated copies remain; no score below identical vectors is sure (different cups' head-on views reach 0.96).
SSCD_LINES = DedupLines(candidate=0.35, sure=1.0, neighbours=10)


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


def dedup_lines(catalog: Catalog, threshold: float | None, verify: bool) -> DedupLines:
    """The lines for this catalog's model; ``threshold`` (a score) moves the candidate line.

    Without the check (``verify`` False) one line decides: the given threshold, else the copy
    detector's sure line or the similarity model's near-duplicate line.
    """
    given = None if threshold is None else 2.0 * float(threshold) - 1.0
    if is_copy_detector(catalog.model):
        lines = SSCD_LINES
        if not verify:
            line = lines.sure if given is None else given
            return DedupLines(line, line, lines.neighbours)
        if given is None:
            return lines
        return DedupLines(given, max(lines.sure, given), lines.neighbours)
    candidate = 2.0 * float(catalog.thresholds.near_duplicate) - 1.0 if given is None else given
    return DedupLines(candidate, 0.9999 if verify else candidate)


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
    lines = dedup_lines(catalog, threshold, verify)
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
    confirmed = _checked(catalog, {e: edges[e] for e in unsure}, records, progress) if unsure else set()
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


def _candidates(catalog: Catalog, lines: DedupLines, batch_size: int,
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


# The copy check on stored features (``catalog.search.stored_features``: fine ORB corners at
# ``geometry.MAX_SIDE`` and the half-size CLAHE grey), chosen on the DEV transformed sets, both variants,
# with the other-shot pairs (benchmarks/dedup_lines.py, benchmarks/results/dedup.md):
# - a fit needs ``COPY_INLIERS`` corners: a 4-degree similarity first, then a full affine (a copy resized
#   to a square is squashed, which no similarity fits), then both against the query mirrored (stored
#   corners are unmirrored; SSCD scores mirrors high but not high enough to skip the check);
# - the fitted pixels must line up everywhere: the correlation over the whole overlap >= ``COPY_NCC``
#   and in its worst block of a 4 x 4 grid >= ``COPY_WORST_BLOCK``. Another shot of a planar scene (a
#   facade, a stereo pair) lines up well on the whole but not that well; a look-alike product lines up
#   except where the label differs; rotated copies of different photos line up only on their filled
#   corners. The worst block is measured in whichever direction (A onto B or B onto A) lines up better,
#   so a copy's filled corners (present in one image only) never count against it.
COPY_INLIERS = 12
COPY_NCC = 0.93
COPY_WORST_BLOCK = 0.5
BLOCK_GRID = 4
FLAT_BLOCK_STD = 4.0  # grey levels: a block this flat in both images (sky, a wall) is no evidence either way
BACKWARD_NCC = 0.8  # the overlap correlation below which the other direction is not measured
OWN_COPY_MARGIN = 0.15  # see ``_own_copies_first``


@dataclass(frozen=True)
class Alignment:
    """How well one fitted transform lines two stored greys up (see ``COPY_NCC``)."""

    inliers: int
    ncc: float  # over the whole overlap (-1: no fit)
    worst_block: float  # the worst block's correlation (1: no informative block)

    @property
    def is_copy(self) -> bool:
        return self.inliers >= COPY_INLIERS and self.ncc >= COPY_NCC and self.worst_block >= COPY_WORST_BLOCK


NO_FIT = Alignment(0, -1.0, -1.0)


def _blockwise(blurred_a: np.ndarray, blurred_b: np.ndarray, transform: np.ndarray) -> tuple[float, float] | None:
    """(overlap NCC, worst block NCC) of A warped onto B's frame. ``blurred_*``: the half-size greys
    blurred by ``geometry.NCC_BLUR`` (``_Prepared``); ``transform`` maps full working-size A to B.
    Block sums come from one reshape, so a check costs one warp and a few array sums. None: too
    little overlap."""
    import cv2

    from lookalike.geometry import at_half_size

    transform = at_half_size(transform)
    h, w = blurred_b.shape
    bh, bw = h // BLOCK_GRID, w // BLOCK_GRID
    if bh < 2 or bw < 2:
        return None
    size = (bw * BLOCK_GRID, bh * BLOCK_GRID)  # B's frame cut to whole blocks: the warp makes only that
    warped = cv2.warpAffine(blurred_a.astype(np.float32), transform, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT,
                            borderValue=float("nan"))  # outside A: NaN, so the overlap is where it is not
    valid = warped == warped
    if np.count_nonzero(valid) < 64:
        return None
    m = valid.astype(np.float32)
    x = cv2.patchNaNs(warped, 0.0)  # in place: outside A counts as 0 (masked out of every sum)
    y = blurred_b[: size[1], : size[0]] * m

    def blocks(z: np.ndarray) -> np.ndarray:
        return z.reshape(BLOCK_GRID, bh, BLOCK_GRID, bw).sum(axis=(1, 3), dtype=np.float64)

    n, sx, sy, sxx, syy, sxy = (blocks(z) for z in (m, x, y, x * x, y * y, x * y))
    safe = np.maximum(n, 1.0)
    cov, vx, vy = sxy - sx * sy / safe, sxx - sx * sx / safe, syy - sy * sy / safe
    tn = n.sum()
    whole_cov = sxy.sum() - sx.sum() * sy.sum() / tn
    whole_var = (sxx.sum() - sx.sum() ** 2 / tn) * (syy.sum() - sy.sum() ** 2 / tn)
    whole = float(whole_cov / max(np.sqrt(max(whole_var, 0.0)), 1e-6))
    flat = (vx / safe < FLAT_BLOCK_STD ** 2) & (vy / safe < FLAT_BLOCK_STD ** 2)
    counted = (n >= 0.5 * bh * bw) & ~flat
    if not counted.any():
        return whole, 1.0
    ncc = cov / np.maximum(np.sqrt(np.maximum(vx * vy, 0.0)), 1e-6)
    return whole, float(ncc[counted].min())


class _Prepared:
    """One image's stored features ready for many checks: its corners, its blurred half-size grey,
    and (made on first need) its mirrored corners and grey."""

    def __init__(self, stored) -> None:  # noqa: ANN001 - geometry.StoredFeatures
        self.stored = stored
        self.fine = stored.fine
        self._blurred: np.ndarray | None = None
        self._mirror = None

    @property
    def blurred(self) -> np.ndarray:
        """The half-size grey blurred by ``geometry.NCC_BLUR`` (uint8, so a chunk's worth stays small),
        decoded on first use: most pairs never fit well enough to be measured."""
        if self._blurred is None:
            import cv2

            from lookalike.geometry import NCC_BLUR

            grey = cv2.imdecode(np.frombuffer(self.stored.gray_jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
            self._blurred = cv2.GaussianBlur(grey, (0, 0), NCC_BLUR)  # the sharp grey is not kept
        return self._blurred

    def mirrored(self) -> tuple:  # (KeypointSet, blurred grey)
        """Corners of the mirrored image (stored corners are unmirrored), found on the stored
        half-size grey enlarged by ``MIRROR_ENLARGE`` and given in working-size pixels."""
        if self._mirror is None:
            import cv2

            from lookalike.geometry import KeypointSet

            half = self.stored.gray
            big = cv2.resize(half, (round(half.shape[1] * MIRROR_ENLARGE), round(half.shape[0] * MIRROR_ENLARGE)),
                             interpolation=cv2.INTER_LINEAR)
            orb = cv2.ORB_create(nfeatures=MIRROR_FEATURES, fastThreshold=MIRROR_FAST_THRESHOLD,
                                 nlevels=MIRROR_LEVELS)
            found, descriptors = orb.detectAndCompute(np.ascontiguousarray(big[:, ::-1]), None)
            if descriptors is None or not found:
                keys = KeypointSet.empty()
            else:  # ORB keeps MIRROR_FEATURES; their order does not matter to a match of all of them, so
                # the positions come out in one C call (KeyPointSet.from_orb's sort walks Python objects)
                xy = cv2.KeyPoint_convert(found).reshape(-1, 2) * np.float32(2.0 / MIRROR_ENLARGE)  # working size
                keys = KeypointSet(np.ascontiguousarray(xy, dtype=np.float32), np.ascontiguousarray(descriptors))
            self._mirror = (keys, np.ascontiguousarray(self.blurred[:, ::-1]))
        return self._mirror


def align(query_xy: np.ndarray, query_grey: Callable[[], np.ndarray], candidate_xy: np.ndarray,
          candidate_grey: Callable[[], np.ndarray], matches, *, full: bool = False) -> Alignment:  # noqa: ANN001
    """Fit query -> candidate on reverse ratio-tested ``matches`` (``geometry.reverse_ratio_matches``: each
    candidate corner at most once; a similarity, or a
    full affine with ``full``) and measure how well the blurred greys (asked for only when a fit has
    enough corners) line up, in the better of the two directions."""
    import cv2

    from lookalike.geometry import ransac_fit

    # reverse matches (``geometry.reverse_ratio_matches``) use each candidate corner at most once, so
    # their count bounds the inliers and the inliers are the RANSAC mask's count (no np.unique)
    if len(matches.query) < max(4, COPY_INLIERS):
        return NO_FIT
    src = query_xy[matches.query].reshape(-1, 1, 2)
    dst = candidate_xy[matches.candidate].reshape(-1, 1, 2)
    transform, mask = ransac_fit(src, dst, full=full)
    if transform is None or mask is None:
        return NO_FIT
    inliers = int(np.count_nonzero(mask))
    if inliers < COPY_INLIERS:
        return Alignment(inliers, -1.0, -1.0)
    best = Alignment(inliers, -1.0, -1.0)
    query_blurred, candidate_blurred = query_grey(), candidate_grey()
    forward = _blockwise(query_blurred, candidate_blurred, transform)
    if forward is not None:
        best = Alignment(inliers, *forward)
        if best.is_copy:
            return best
    if forward is not None and forward[0] >= BACKWARD_NCC and abs(np.linalg.det(transform[:, :2])) > 1e-6:
        # the other direction, where the forward one nearly lines up: filled corners of one side drop out
        backward = _blockwise(candidate_blurred, query_blurred, cv2.invertAffineTransform(transform))
        if backward is not None and (backward[1], backward[0]) > (best.worst_block, best.ncc):
            best = Alignment(inliers, *backward)
    return best


# SSCD scores a mirrored copy high (bare sscd_distilled: every hflip and vflip at cosine >= 0.6 on the
# DEV sets), so the mirrored query is tried only for pairs at or above this cosine; finding a mirror's
# corners is the check's dearest step.
MIRROR_COSINE = 0.6
MIRROR_FEATURES = 300  # ORB corners kept on the mirror: as many as are stored (1000 found no more flips)
# How the mirror's corners are found (benchmarks/results/dedup.md, "mirror corners"): on the half-size grey
# enlarged 1.5x (not 2x, the working size), ORB's corner threshold 20 (as stored) and 4 pyramid levels (not 8):
# ~1.2 ms an image instead of ~4.3 ms, the same flip recall on both DEV sets; the half-size grey itself (1x)
# lost 1-2 points of flip recall.
MIRROR_ENLARGE = 1.5
MIRROR_FAST_THRESHOLD = 20
MIRROR_LEVELS = 4


def _squashed(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether B's aspect ratio differs from A's (either way round, for quarter turns) by more than
    ``SQUASH``: only then can B be A resized out of proportion, which a similarity cannot fit."""
    ra, rb = a.shape[1] / a.shape[0], b.shape[1] / b.shape[0]
    return min(abs(np.log(ra / rb)), abs(np.log(ra * rb))) > SQUASH


SQUASH = 0.05


def verify_against(query: _Prepared, candidates: list[_Prepared], *, mirrored: bool = False) -> list[Alignment]:
    """The copy check of one image against several (``COPY_NCC``): one batched FAISS match of the
    query's corners (or its mirror's) against all candidates' (``geometry.reverse_ratio_matches``),
    then a similarity fit, and a full affine fit where the similarity does not line the pixels up."""
    from lookalike.geometry import reverse_ratio_matches

    if mirrored:
        keys, mirrored_grey = query.mirrored()
        grey = lambda: mirrored_grey  # noqa: E731
    else:
        keys, grey = query.fine, lambda: query.blurred  # noqa: E731
    out = []
    for candidate, matches in zip(candidates, reverse_ratio_matches(keys, [c.fine for c in candidates],
                                                                      split=False)):
        other = lambda c=candidate: c.blurred  # noqa: E731
        best = align(keys.xy, grey, candidate.fine.xy, other, matches)
        if not best.is_copy and best.inliers >= COPY_INLIERS // 2 and _squashed(grey(), other()):
            squashed = align(keys.xy, grey, candidate.fine.xy, other, matches, full=True)
            best = squashed if squashed.is_copy else best
        out.append(best)
    return out


CHECK_CHUNK = 512  # images matched against their partners with one chunk's features in memory


def _checked(catalog: Catalog, cosines: dict[tuple[int, int], float], records: dict[int, ImageRecord],
             progress: ProgressFn | None) -> set[tuple[int, int]]:
    """The pairs the copy check calls copies, from the catalog's stored local features (computed
    and stored first for images that lack them: a catalog indexed without them).

    Two rounds. Plain: every pair, each image matched against all its partners at once. Mirrored:
    only pairs at or above ``MIRROR_COSINE`` that the plain round left in different groups of
    copies (a mirror of an image the plain round already tied to the other is no news), with the
    mirror made of the image in most such pairs (finding a mirror's corners is the dearest step).
    Every such pair is tried, not one per two groups: stars need the centre's own pairs.
    Images are taken ``CHECK_CHUNK`` at a time, in the candidate graph's breadth-first order, with
    their partners' features; later chunks and the mirror round reuse the ``CHECK_KEEP`` most
    recent (memory stays flat as the catalog grows, and an image's grey is decoded about once).
    Each chunk runs in threads (OpenCV and FAISS release the GIL)."""
    from lookalike.catalog.search import ensure_features, stored_features

    ensure_features(catalog, [records[i] for i in sorted({i for pair in cosines for i in pair})],
                    progress=None if progress is None else lambda done, total: progress("features", done, total))
    order = _breadth_first(cosines)
    kept: dict[int, _Prepared] = {}  # recent chunks' prepared images (greys decoded, mirrors made)
    plain: dict[int, list[int]] = {}  # each pair once, under its smaller id
    for a, b in cosines:
        plain.setdefault(a, []).append(b)
    done = 0
    total = len(plain) + len(plain) // 2  # queries; the mirror round's share is known after the plain round

    def round_(by_query: dict[int, list[int]], mirrored: bool) -> dict:
        nonlocal kept, done, total

        def decide(item: tuple[int, list[int]], prepared: dict) -> list[tuple[tuple[int, int], Alignment]]:
            a, partners = item
            partners = [b for b in partners if b in prepared]
            found = verify_against(prepared[a], [prepared[b] for b in partners], mirrored=mirrored)
            return [((min(a, b), max(a, b)), result) for b, result in zip(partners, found)]

        results: dict[tuple[int, int], Alignment] = {}
        queries = [i for i in order if i in by_query]
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            for start in range(0, len(queries), CHECK_CHUNK):
                chunk = queries[start : start + CHECK_CHUNK]
                ids = sorted(set(chunk) | {b for a in chunk for b in by_query[a]})
                prepared = {i: kept[i] for i in ids if i in kept}
                fresh = [i for i in ids if i not in prepared]
                stored = stored_features(catalog, [records[i] for i in fresh]) if fresh else []
                prepared.update((i, _Prepared(f)) for i, f in zip(fresh, stored) if f is not None)
                # keep this chunk's images and, up to CHECK_KEEP, the most recent others
                kept = {i: p for i, p in kept.items() if i not in prepared}
                kept = dict(list(kept.items())[max(0, len(kept) + len(prepared) - CHECK_KEEP):]) | prepared
                items = [(a, by_query[a]) for a in chunk if a in prepared]
                for found in pool.map(lambda item: decide(item, prepared), items):
                    results.update(found)
                done += len(chunk)
                if progress is not None:
                    progress("check", min(done, total), max(done, total))
        return results

    tried = round_(plain, False)
    confirmed = {pair: result for pair, result in tried.items() if result.is_copy}
    group = _components(confirmed)
    left = [(a, b) for a, b in tried if cosines[(a, b)] >= MIRROR_COSINE and (a, b) not in confirmed
            and group.get(a, a) != group.get(b, b)]
    count: dict[int, int] = {}
    for a, b in left:
        count[a] = count.get(a, 0) + 1
        count[b] = count.get(b, 0) + 1
    mirror: dict[int, list[int]] = {}
    for a, b in left:
        query, other = (a, b) if (count[a], -a) >= (count[b], -b) else (b, a)
        mirror.setdefault(query, []).append(other)
    total = len(plain) + len(mirror)
    mirrored = round_(mirror, True)
    confirmed.update((pair, result) for pair, result in mirrored.items() if result.is_copy)
    return _own_copies_first(confirmed)


CHECK_THREADS = max(1, min(4, os.cpu_count() or 1))
CHECK_KEEP = 2048  # prepared images kept between chunks and rounds (~50 KB each): each grey decoded ~once


def _breadth_first(pairs) -> list[int]:  # noqa: ANN001 - iterable of (a, b)
    """The images of ``pairs`` in breadth-first order of their graph (each component from its
    smallest id): an image's partners come soon after it, so a chunk of queries needs few images
    outside itself."""
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    seen: set[int] = set()
    order: list[int] = []
    for root in sorted(neighbours):
        if root in seen:
            continue
        seen.add(root)
        queue = [root]
        for node in queue:  # the list grows as we walk it: a FIFO queue without pops
            order.append(node)
            for other in sorted(neighbours[node]):
                if other not in seen:
                    seen.add(other)
                    queue.append(other)
    return order


def _own_copies_first(confirmed: dict[tuple[int, int], Alignment]) -> set[tuple[int, int]]:
    """The confirmed pairs less those that line up clearly worse than both images' best pairs.

    An image's own copies line up about as well as its edits allow (a JPEG 40 copy less well than a
    flip, but all its pairs alike); a look-alike product or a near-identical other photo lines up
    nearly as well, but worse in the region where they differ than either image does with its own
    copies. So a pair whose worst block is ``OWN_COPY_MARGIN`` below the best worst block of each of
    its two images is a look-alike both have better matches for (benchmarks/results/dedup.md)."""
    best: dict[int, float] = {}
    for (a, b), result in confirmed.items():
        for end in (a, b):
            best[end] = max(best.get(end, -1.0), result.worst_block)
    return {pair for pair, result in confirmed.items()
            if result.worst_block >= min(best[pair[0]], best[pair[1]]) - OWN_COPY_MARGIN}


def _components(pairs) -> dict[int, int]:  # noqa: ANN001 - iterable of (a, b)
    """Each image's component root in the graph of ``pairs`` (union-find)."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    return {x: root(x) for x in list(parent)}


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
