"""Catalog search: the one path from a query to verified, ordered hits.

Decode the query once (the embedder's decode, which ``/v1/compare`` verifies on too), embed it,
ask the index for the top ``search_rerank_top`` hits, re-rank them by local-feature evidence
(``geometry.rerank_fits``: cosine + capped inliers, fitted only where it could change the
returned head), then re-decide the tiers of the returned hits the score leaves open
(``geometry.check_copy`` + ``decide_tier``). The route, the CLI, the web page (through the route)
and ``lookalike eval groups`` (``rerank_head``) call this module; none repeats a step.

Catalog images are never decoded here: their local features live in ``features.sqlite`` beside
the catalog (``FeatureStore``), written by ingestion through ``geometry.features_for`` (the
``index_local_features`` default) or, for images indexed without them or in an older format,
computed on the first search that needs them and kept. A hit's coarse corners (the tier check's
second look) are made from its stored grey the first time a check needs them, and stored too.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.geometry import (
    FEATURES_MAGIC,
    QueryFeatures,
    StoredFeatures,
    check_copy,
    decide_tier,
    features_for,
    needs_check,
    pack_features,
    rerank_fits,
    rerank_key,
    unpack_features,
)
from lookalike.imaging import ImageSource, content_hash, read_source_bytes
from lookalike.parallel import each_on_two_threads, side_by_side
from lookalike.similarity import Tier

if TYPE_CHECKING:  # the catalog imports this module's FeatureStore
    from lookalike.catalog.catalog import Catalog, SearchResult
    from lookalike.catalog.metadata import ImageRecord

FEATURES_FILE = "features.sqlite"
VERIFY_TOP = 10  # returned hits whose tier the geometric check may re-decide
Order = Literal["cosine", "rank_score"]


class FeatureStore:
    """Local features of a catalog's images (``geometry.features_for`` bytes), by image id.

    Its own SQLite file (WAL, one transaction per write), so it keeps the vectors' contract: a
    ``kill -9`` leaves each row whole or absent, and a lost or damaged file is only a cache,
    refilled from the originals by the searches that need it. Ids are never reused
    (``images.id`` is AUTOINCREMENT), and the content hash is kept as a second check.
    """

    SCHEMA = ("CREATE TABLE IF NOT EXISTS features (id INTEGER PRIMARY KEY, content_hash TEXT NOT NULL, "
              "data BLOB NOT NULL)")

    def __init__(self, path: Path, recent: int = 0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._recent: OrderedDict[tuple[int, str], StoredFeatures] = OrderedDict()
        self._recent_size = recent
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError:  # unreadable: a cache, so start it again
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(self.SCHEMA)
        return conn

    def get_many(self, keys: Sequence[tuple[int, str]]) -> dict[int, bytes]:
        """``{id: blob}`` for the (id, content hash) pairs stored (a changed hash counts as missing)."""
        if not keys:
            return {}
        wanted = dict(keys)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            rows = self._conn.execute(f"SELECT id, content_hash, data FROM features WHERE id IN ({marks})",
                                      list(wanted)).fetchall()
        return {int(i): bytes(data) for i, digest, data in rows
                if wanted.get(int(i)) == digest and bytes(data[:4]) == FEATURES_MAGIC}  # else: recomputed

    def unpacked(self, keys: Sequence[tuple[int, str]]) -> dict[int, StoredFeatures]:
        """``{id: StoredFeatures}`` for the (id, content hash) pairs stored: the ``recent`` most
        recently used ones from memory, already unpacked (with the grey image and coarse corners a
        tier check decoded or made), the rest read from the file. A search reads some fifty hits'
        features, and the next search mostly the same: reading and unpacking them again cost ~1 ms
        and decoding their grey images ~1.5 ms of CPU a query."""
        out: dict[int, StoredFeatures] = {}
        with self._lock:
            for key in keys:
                features = self._recent.get(key)
                if features is not None:
                    self._recent.move_to_end(key)
                    out[key[0]] = features
        missing = [key for key in keys if key[0] not in out]
        read = {i: unpack_features(blob) for i, blob in self.get_many(missing).items()}
        if self._recent_size and read:
            with self._lock:
                for key in missing:
                    if key[0] in read:
                        self._recent[key] = read[key[0]]
                while len(self._recent) > self._recent_size:
                    self._recent.popitem(last=False)
        return out | read

    def have(self, keys: Sequence[tuple[int, str]]) -> set[int]:
        """The ids of the (id, content hash) pairs stored in this format, without reading their data."""
        if not keys:
            return set()
        wanted = dict(keys)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            rows = self._conn.execute(f"SELECT id, content_hash FROM features WHERE id IN ({marks}) "
                                      "AND substr(data, 1, 4) = ?", [*wanted, FEATURES_MAGIC]).fetchall()
        return {int(i) for i, digest in rows if wanted.get(int(i)) == digest}

    def put_many(self, rows: Iterable[tuple[int, str, bytes]]) -> None:
        rows = [(int(i), digest, sqlite3.Binary(data)) for i, digest, data in rows]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO features(id, content_hash, data) VALUES (?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def delete(self, ids: Iterable[int]) -> None:
        ids = {int(i) for i in ids}
        with self._lock:
            self._conn.executemany("DELETE FROM features WHERE id = ?", [(i,) for i in ids])
            for key in [key for key in self._recent if key[0] in ids]:
                del self._recent[key]

    def ids(self) -> np.ndarray:
        """Ids whose features are stored in this version's format (``geometry.FEATURES_MAGIC``)."""
        with self._lock:
            rows = self._conn.execute("SELECT id FROM features WHERE substr(data, 1, 4) = ? ORDER BY id",
                                      (FEATURES_MAGIC,))
            return np.array([r[0] for r in rows], dtype=np.int64)

    def stats(self) -> tuple[int, int]:
        """(images with features, bytes of features stored)."""
        with self._lock:
            count, total = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM features").fetchone()
        return int(count), int(total)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def stored_features(catalog: Catalog, records: Sequence[ImageRecord], embedder=None) -> list[StoredFeatures | None]:  # noqa: ANN001
    """Each record's stored features, computing (and keeping) those the store lacks from the
    original, decoded as the embedder decodes it; ``None`` where the original is gone."""
    store = catalog.features
    found = store.unpacked([(r.id, r.content_hash) for r in records])
    missing = [r for r in records if r.id not in found]
    if missing:
        embedder = embedder or catalog.embedder()
        fresh = []
        for record in missing:
            try:
                blob = features_for(embedder.load(catalog.original_path(record)))
            except LookalikeError:  # vanished or unreadable since indexing: no local evidence
                continue
            fresh.append((record.id, record.content_hash, blob))
            found[record.id] = unpack_features(blob)
        store.put_many(fresh)
    return [found.get(r.id) for r in records]


def ensure_features(catalog: Catalog, records: Sequence[ImageRecord] | None = None, *, embedder=None,  # noqa: ANN001
                    progress: Callable[[int, int], None] | None = None) -> int:
    """Store features for the catalog images (all, or ``records``) that have none in this format
    (what ingestion does per image via ``geometry.features_for``; a catalog indexed without them),
    from the originals, in threads (OpenCV and Pillow release the GIL). ``progress(done, total)``
    as they are made; returns how many were computed."""
    records = list(catalog.meta.records()) if records is None else list(records)
    missing: list[ImageRecord] = []
    for start in range(0, len(records), 4096):
        batch = records[start : start + 4096]
        have = catalog.features.have([(r.id, r.content_hash) for r in batch])
        missing += [r for r in batch if r.id not in have]
    if not missing:
        return 0
    embedder = embedder or catalog.embedder()
    chunks = [missing[i : i + 32] for i in range(0, len(missing), 32)]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        for done, _ in enumerate(pool.map(lambda chunk: stored_features(catalog, chunk, embedder), chunks), 1):
            if progress is not None:
                progress(min(done * 32, len(missing)), len(missing))
    return len(missing)


@dataclass(frozen=True)
class HeadOrder:
    """The re-ranked head: positions into the candidates, best first, with each one's key."""

    order: list[int]
    keys: list[float]
    inliers: list[int | None]  # None: not fitted (it could not reach the kept head)
    fits: list = field(default_factory=list)  # geometry.Fit per candidate (None: not fitted)


def rerank_head(query: QueryFeatures, candidates: Sequence[StoredFeatures | None], cosines: Sequence[float],
                keep: int) -> HeadOrder:
    """Order candidates (given in embedding order) by ``geometry.rerank_key``; the first ``keep``
    are exact, the rest follow by cosine. Search and ``eval groups`` both order through here."""
    fits = rerank_fits(query, list(candidates), list(cosines), keep)
    inliers = [None if f is None else f.inliers for f in fits]
    keys = [rerank_key(c, n) for c, n in zip(cosines, inliers)]
    order = sorted(range(len(keys)), key=lambda i: -keys[i])  # stable: ties keep the embedding order
    return HeadOrder(order, keys, inliers, fits)


def verified_tier(query: QueryFeatures, candidate: StoredFeatures, score: float, thresholds, first=None) -> Tier:  # noqa: ANN001
    """A hit's tier as ``/v1/compare`` decides it without a copy detector (``copy_model = "none"``;
    the catalog stores no copy-detector vectors), from stored features: ``check_copy`` with
    the mirror and the second look only at near-duplicate scores (below, on the DEV pairs they never
    changed a verdict), and the second look only where the fine evidence leaves the copy open."""
    evidence = check_copy(query, candidate, first, other_tries=score >= thresholds.near_duplicate,
                          settled=lambda fine: decide_tier(score, thresholds, fine) is Tier.NEAR_DUPLICATE)
    return decide_tier(score, thresholds, evidence)


@dataclass(frozen=True)
class SearchAnswer:
    """Hits best first, and which order is in force (``rank_score`` when the head was re-ranked)."""

    results: list[SearchResult]
    order: Order
    reranked: int  # how many top hits by cosine the re-rank considered (0: cosine order)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"order": self.order, "reranked": self.reranked, "results": [r.to_dict() for r in self.results]}


_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-features")


def _keep_made_coarse(catalog: Catalog, checked: Sequence[tuple[ImageRecord, StoredFeatures]]) -> None:
    """Store the coarse corners a tier check made from a hit's grey (``StoredFeatures.coarse``),
    so the next search that needs them reads them; written after the answer, off its path (a
    lost write only means they are made again)."""
    rows = []
    for record, features in checked:
        if features.coarse_made:
            rows.append((record.id, record.content_hash, pack_features(features)))
            features.coarse_made = False  # kept in memory (FeatureStore.unpacked): written once
    if rows:
        store = catalog.features

        def write() -> None:
            try:
                store.put_many(rows)
            except sqlite3.Error:  # the catalog was closed meanwhile: made again next time
                pass

        _WRITER.submit(write)


@contextmanager
def _one_omp_thread() -> Iterator[None]:
    """FAISS on one OpenMP thread in this thread (the setting is per calling thread): one query's
    kNN is far too small to share, and on busy cores the team's spin-waits cost more than the
    search (measured: 5 ms of CPU for a 0.2 ms search of the ~880-image catalog)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


def search_image(catalog: Catalog, source: ImageSource, k: int = 10, *, pool=None) -> SearchAnswer:  # noqa: ANN001
    """The ``k`` catalog images closest to an image (bytes, a path, ...), verified and ordered."""
    started = time.perf_counter()
    embedder = catalog.embedder(pool)
    data = read_source_bytes(source, embedder.limits)
    image = embedder.load(data if data is not None else source)  # the one decode
    query_hash = content_hash(data) if data is not None else None
    verify = catalog.settings.geometric_check

    def neighbours() -> _Neighbours:
        vector = embedder.encode_decoded([image])[0]
        embedded = time.perf_counter()
        found = _neighbours(catalog, vector, k, verify, query_hash=query_hash, embedder=embedder)
        found.timings["embed"] = (embedded - started) * 1000.0
        return found

    # the query's corners (the longest step: ~7 ms on one core) on the other core while this one
    # embeds, searches the index and reads the hits' features
    found, query = side_by_side(neighbours, lambda: QueryFeatures(image)) if verify else (neighbours(), None)
    answer = _verified(catalog, found, query, k)
    answer.timings_ms["total"] = (time.perf_counter() - started) * 1000.0
    return answer


def search_id(catalog: Catalog, image_id: int, k: int = 10, *, pool=None) -> SearchAnswer:  # noqa: ANN001
    """The ``k`` catalog images closest to catalog image ``image_id`` (itself left out)."""
    record = catalog.get(image_id)
    vector = catalog.vector(image_id)
    image = None
    embedder = catalog.embedder(pool)
    if catalog.settings.geometric_check:
        image = embedder.load(catalog.original_path(record))
    return search_decoded(catalog, vector, image, k, query_hash=record.content_hash, exclude_id=image_id,
                          embedder=embedder)


def search_decoded(catalog: Catalog, vector: np.ndarray, image, k: int, *, query_hash: str | None = None,  # noqa: ANN001
                   exclude_id: int | None = None, embedder=None) -> SearchAnswer:  # noqa: ANN001
    """kNN, re-rank and tiers for an embedded query; ``image``: its decoded pixels (None: no
    verification)."""
    verify = image is not None and catalog.settings.geometric_check
    found = _neighbours(catalog, vector, k, verify, query_hash=query_hash, exclude_id=exclude_id, embedder=embedder)
    return _verified(catalog, found, QueryFeatures(image) if verify and found.results else None, k)


@dataclass
class _Neighbours:
    """The index's nearest hits of a query and, when they are to be verified, their stored features:
    those of the first ``head`` (re-ranked) and of the first ``checked`` (tiers checked)."""

    results: list[SearchResult]
    features: list[StoredFeatures | None]
    timings: dict[str, float]
    head: int = 0
    checked: int = 0


def _neighbours(catalog: Catalog, vector: np.ndarray, k: int, verify: bool, *, query_hash: str | None = None,
                exclude_id: int | None = None, embedder=None) -> _Neighbours:  # noqa: ANN001
    """kNN (``search_rerank_top`` hits when verifying, else ``k``) and the stored features of the
    hits the re-rank and the tier check read."""
    head = catalog.settings.search_rerank_top if verify else 0
    started = time.perf_counter()
    with _one_omp_thread():
        results = catalog.search(np.asarray(vector)[None], max(k, head), query_hash=query_hash,
                                 exclude_id=exclude_id)[0]
    timings = {"knn": _ms(started)}
    if not verify or not results:
        return _Neighbours(results, [], timings)
    started = time.perf_counter()
    head, checked = min(head, len(results)), min(k, VERIFY_TOP, len(results))
    features = stored_features(catalog, [r.record for r in results[: max(head, checked)]], embedder)
    timings["features"] = _ms(started)
    return _Neighbours(results, features, timings, head, checked)


def _verified(catalog: Catalog, found: _Neighbours, query: QueryFeatures | None, k: int) -> SearchAnswer:
    """Re-rank the head of ``found`` by local features and decide the tiers of the first hits
    (``query``: the query's features; None: no verification, cosine order)."""
    results, features, timings = found.results, found.features, found.timings
    if query is None or not results:
        return SearchAnswer(results[:k], "cosine", 0, timings)
    started = time.perf_counter()
    head, checked = found.head, found.checked
    thresholds = catalog.thresholds
    if head:
        cosines = [r.cosine for r in results[:head]]
        ranked = rerank_head(query, features[:head], cosines, keep=k)
        order = ranked.order + list(range(head, len(results)))
        results = [dataclasses.replace(results[i], rank_score=ranked.keys[i], inliers=ranked.inliers[i],
                                       verified=ranked.inliers[i] is not None) if i < head else results[i]
                   for i in order]
        features = [features[i] for i in order[: len(features)]]
        firsts = [ranked.fits[i] if i < head else None for i in order[: len(features)]]
    else:
        firsts = [None] * len(features)
    results = results[:k]
    timings["rerank"] = _ms(started)
    started = time.perf_counter()
    # tiers of the returned hits the score leaves open (copy, or another shot?), on both cores
    open_hits = [i for i in range(checked)
                 if features[i] is not None and needs_check(results[i].score, thresholds, Tier(results[i].verdict))]
    tiers = each_on_two_threads(open_hits, lambda i: verified_tier(query, features[i], results[i].score, thresholds,
                                                                     firsts[i]))
    for i, verdict in tiers.items():
        results[i] = dataclasses.replace(results[i], verdict=verdict.value)
    _keep_made_coarse(catalog, [(results[i].record, features[i]) for i in open_hits])
    timings["tiers"] = _ms(started)
    timings["verify"] = timings["rerank"] + timings["tiers"] + timings.get("features", 0.0)
    return SearchAnswer(results, "rank_score" if head else "cosine", head, timings)
