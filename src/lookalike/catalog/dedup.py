"""Near-duplicate clusters over a catalog: range search + connected components.

Every stored vector is a range-search query (in batches) against the index for neighbours with
cosine >= the threshold; those edges plus same-hash edges form a sparse graph whose connected
components (SciPy's ``connected_components``) are the candidate groups. No Python loop over all
pairs. Connected components chain (A~B, B~C, but A is far from C: on look-alike product shots a
component can hold dozens of different photos), so each component is then split into stars: the
best image to keep (largest resolution, then bytes, then the oldest id) takes every remaining
member within the threshold of IT, and so on. Every member of a cluster is thus a near-duplicate
of the image kept. A cluster whose members all share one content hash is the ``exact`` tier;
any other is ``near_duplicate``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lookalike.similarity import normalized_score
from lookalike.catalog.catalog import Catalog
from lookalike.catalog.metadata import ImageRecord

KeepRule = Callable[[list[ImageRecord]], ImageRecord]


def keep_largest(members: list[ImageRecord]) -> ImageRecord:
    return max(members, key=lambda r: (r.width * r.height, r.size, -r.id))


@dataclass
class Pair:
    a: int
    b: int
    cosine: float
    score: float
    verdict: str

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "cosine": self.cosine, "score": self.score, "verdict": self.verdict}


@dataclass
class Cluster:
    cluster_id: int
    tier: str  # "exact" | "near_duplicate"
    keep: int
    members: list[ImageRecord]
    pairs: list[Pair] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "cluster_id": self.cluster_id,
            "tier": self.tier,
            "keep": self.keep,
            "members": [{"id": m.id, "path": m.path, "filename": m.filename, "width": m.width, "height": m.height}
                        for m in self.members],
            "pairs": [p.to_dict() for p in self.pairs],
        }


@dataclass
class DuplicateReport:
    catalog: str
    threshold: float  # on the score scale (cos+1)/2
    clusters: list[Cluster]

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "clusters": [c.to_dict() for c in self.clusters]}

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


def find_duplicates(catalog: Catalog, threshold: float | None = None, *, keep: KeepRule = keep_largest,
                    batch_size: int = 1024, verify: bool | None = None) -> DuplicateReport:
    """Clusters of images with score >= ``threshold`` (default: the model's near-duplicate line).

    ``verify`` (default: ``settings.geometric_check``) keeps only the edges that the local-feature
    check confirms as an edited copy: without it, other shots of one product (or look-alike packs)
    chain into large clusters, since no score line separates them from copies.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    thresholds = catalog.thresholds
    threshold = float(thresholds.near_duplicate if threshold is None else threshold)
    if not 0.0 <= threshold <= 1.0:
        from lookalike.errors import LookalikeError

        raise LookalikeError("threshold is a score in [0, 1]", status=422, code="bad_threshold")
    min_cosine = 2.0 * threshold - 1.0

    with catalog._lock:  # a consistent snapshot of the index while we query it
        ids = np.sort(catalog.store.ids())
        position = {int(i): p for p, i in enumerate(ids)}
        rows, cols, cosines = [], [], []
        for batch_ids, vectors in catalog.store.iter_batches(batch_size):
            for query_id, hits in zip(batch_ids, catalog.store.range_search(vectors, min_cosine)):
                for hit in hits:
                    if hit.id > query_id and hit.id in position:  # each undirected edge once
                        rows.append(position[int(query_id)])
                        cols.append(position[hit.id])
                        cosines.append(hit.cosine)
    edges: dict[tuple[int, int], float] = {}
    for r, c, cos in zip(rows, cols, cosines):
        edges[(int(ids[r]), int(ids[c]))] = min(1.0, float(cos))
    verify = catalog.settings.geometric_check if verify is None else verify
    if verify and edges:
        line = dataclasses.replace(thresholds, near_duplicate=threshold, similar=min(threshold, thresholds.similar))
        edges = _verified(catalog, edges, line)
        rows = [position[a] for a, _ in edges]
        cols = [position[b] for _, b in edges]
    for group in catalog.meta.exact_groups():  # same bytes: always one cluster, whatever the vectors say
        for a, b in zip(group, group[1:]):
            if a in position and b in position:
                edges.setdefault((a, b), 1.0)
                rows.append(position[a])
                cols.append(position[b])
    n = len(ids)
    if n == 0 or not edges:
        return DuplicateReport(catalog.name, threshold, [])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    by_label: dict[int, list[int]] = {}
    for p in np.flatnonzero(sizes[labels] > 1):
        by_label.setdefault(int(labels[p]), []).append(int(ids[p]))
    records = catalog.meta.get_many([i for members in by_label.values() for i in members])
    linked = set(edges) if verify else None
    stars = [star for member_ids in by_label.values()
             for star in _stars([records[i] for i in member_ids], catalog, min_cosine, keep, linked)]
    clusters = []
    for kept, members, cosines in sorted(stars, key=lambda s: (-len(s[1]), s[0].id)):
        inside = {m.id for m in members}
        found = {(a, b): cos for (a, b), cos in edges.items() if a in inside and b in inside}
        for member, cos in zip(members, cosines):  # every member's score against the kept image
            if member.id != kept.id:
                found.setdefault((min(kept.id, member.id), max(kept.id, member.id)), cos)
        pairs = []
        for (a, b), cos in sorted(found.items(), key=lambda kv: -kv[1]):
            score = float(normalized_score(cos))
            same = records[a].content_hash == records[b].content_hash
            pairs.append(Pair(a, b, cos, score, thresholds.tier(score, exact=same).value))
        tier = "exact" if len({m.content_hash for m in members}) == 1 else "near_duplicate"
        clusters.append(Cluster(len(clusters) + 1, tier, kept.id, sorted(members, key=lambda m: m.id), pairs))
    return DuplicateReport(catalog.name, threshold, clusters)


def _verified(catalog: Catalog, edges: dict[tuple[int, int], float], line) -> dict[tuple[int, int], float]:  # noqa: ANN001
    """The edges whose two images pass the geometric copy check (features computed once per image)."""
    from lookalike.errors import LookalikeError
    from lookalike.geometry import decide_tier, load_features, match_features
    from lookalike.imaging import ImageLimits
    from lookalike.similarity import Tier

    limits = ImageLimits.from_settings(catalog.settings)
    records = catalog.meta.get_many({i for pair in edges for i in pair})
    features: dict[int, object] = {}

    def features_of(image_id: int):  # noqa: ANN202
        if image_id not in features:
            try:
                features[image_id] = load_features(catalog.original_path(records[image_id]), limits)
            except LookalikeError:  # file gone or changed since indexing: trust the score alone
                features[image_id] = None
        return features[image_id]

    kept = {}
    for (a, b), cos in edges.items():
        if records[a].content_hash == records[b].content_hash:
            kept[(a, b)] = cos
            continue
        fa, fb = features_of(a), features_of(b)
        if fa is None or fb is None:
            kept[(a, b)] = cos
            continue
        score = float(normalized_score(cos))
        if decide_tier(score, line, match_features(fa, fb)) is Tier.NEAR_DUPLICATE:
            kept[(a, b)] = cos
    return kept


def _stars(members: list[ImageRecord], catalog: Catalog, min_cosine: float, keep: KeepRule,
           linked: set[tuple[int, int]] | None = None):
    """Split one connected component into (kept, members, cosine to kept) stars of size >= 2.

    With ``linked`` (verified edges), a member joins the kept image's star only through a verified
    edge to it (or the same bytes).
    """
    vectors = catalog.meta.vectors([m.id for m in members], catalog.dim)
    # neighbours within the threshold break ties of the keep rule (among equal resolutions, the
    # most central image keeps the most copies together); skipped for giant components
    degree = ((vectors @ vectors.T) >= min_cosine - 1e-6).sum(axis=1) if len(members) <= 4096 else None
    left = list(range(len(members)))
    while len(left) > 1:
        best = keep([members[i] for i in left])
        if degree is not None and keep is keep_largest:
            area = best.width * best.height
            ties = [i for i in left if members[i].width * members[i].height == area]
            centre = max(ties, key=lambda i: (degree[i], members[i].size, -members[i].id))
        else:
            centre = members.index(best)
        cosines = vectors[left] @ vectors[centre]
        hashes = members[centre].content_hash
        take = [j for j, c in zip(left, cosines)
                if (c >= min_cosine - 1e-6 and _linked(linked, members[j].id, members[centre].id))
                or members[j].content_hash == hashes]
        chosen = {j: float(min(1.0, c)) for j, c in zip(left, cosines) if j in set(take)}
        if len(take) > 1:
            yield members[centre], [members[j] for j in take], [chosen[j] for j in take]
        left = [j for j in left if j not in chosen]


def _linked(linked: set[tuple[int, int]] | None, a: int, b: int) -> bool:
    return linked is None or a == b or (min(a, b), max(a, b)) in linked
