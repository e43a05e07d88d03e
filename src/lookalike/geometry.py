"""Is B an edited copy of A, or another shot of the same thing? Local features decide.

A global embedding scores "same object, other photo" about as high as "same photo, edited", so
no single score line separates the two (benchmarks/results/accuracy.md). An edited copy keeps the
pixels' geometry up to a similarity transform (resize, crop, small rotation, padding, mirror);
another shot does not (viewpoint, perspective, lighting). So: ORB keypoints on contrast-normalized
grey images (CLAHE, so brightness/gamma/grey edits keep their corners), ratio-tested matches, and a
RANSAC fit of a 4-degree-of-freedom similarity transform; the share of keypoints that fit it is
the evidence. Mirrored copies are tried too. OpenCV is imported lazily (only when called).

Keypoint counts alone are weak evidence on small or degraded copies (a 130 px low-quality crop has a
handful of corners) and too strong on overlapping shots of a planar scene (a box, a facade). So the
fitted transform is also checked densely: A warped onto B must line up pixel for pixel (normalised
cross-correlation of the blurred, CLAHE-normalised grey images over the overlap), which an edited
copy does and another shot (perspective, lighting, background) does not
(benchmarks/research/accuracy_local.py, benchmarks/research/results/accuracy_local.md).

Blur and heavy JPEG erase the fine corners the first fit needs; a second look on coarse corners
(both images blurred, low corner threshold) lines such copies up, and counts only when it does
(benchmarks/research/second_look.py, benchmarks/research/results/second_look.md).

``refine_tier`` is the one place the tier decision uses it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from lookalike.similarity import Tier

MAX_SIDE = 384  # enough corners for a copy check; keeps one check ~10-20 ms; smaller images are enlarged
# to it: ORB's 31 px border margin and 8-level pyramid leave almost no corners on a 130 px copy
N_FEATURES = 1000
RATIO_TEST = 0.8
RANSAC_PX = 6.0  # reprojection tolerance at MAX_SIDE
NCC_BLUR = 1.0  # Gaussian sigma (px at MAX_SIDE / 2) before correlating: blur/JPEG/noise edits stop mattering


@dataclass(frozen=True)
class GeometryResult:
    inliers: int
    keypoints: int  # the smaller keypoint count of the two images
    ratio: float  # inliers / keypoints
    flipped: bool  # the best fit was against the mirrored image
    ncc: float | None = None  # A warped onto B by the fit vs B (-1: no fit); None: not measured
    cover: float | None = None  # how wholly one frame lies inside the other under the fit (``frame_overlap``); None: not measured
    share: float | None = None  # how much of the larger frame the overlap fills (``frame_overlap``); None: not measured

    def is_copy(self, min_ratio: float, min_inliers: int) -> bool:
        return self.inliers >= min_inliers and self.ratio >= min_ratio


def _gray(image: Image.Image, max_side: int = MAX_SIDE):
    import cv2

    img = image.convert("L")
    scale = max_side / max(img.size)
    if abs(scale - 1) > 0.01:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.BICUBIC)
    array = np.asarray(img)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(array)


def _features(gray, n_features: int = N_FEATURES):
    import cv2

    orb = cv2.ORB_create(nfeatures=n_features, fastThreshold=10)
    return orb.detectAndCompute(gray, None)


def ransac_fit(src: np.ndarray, dst: np.ndarray, *, full: bool = False):  # noqa: ANN201 - (2x3 or None, mask or None)
    """(transform, inlier mask) of ``src`` -> ``dst`` points ((n, 1, 2) float32, working-size pixels) by
    RANSAC: a 4-degree similarity, or a full affine with ``full``. The one place the fit's tolerance
    (``RANSAC_PX``) and effort are set, for compare's, search's and dedup's checks alike."""
    import cv2

    estimate = cv2.estimateAffine2D if full else cv2.estimateAffinePartial2D
    return estimate(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=2000, confidence=0.99)


def at_half_size(transform) -> np.ndarray:  # noqa: ANN001 - a 2x3 array-like
    """A working-size A -> B transform as it maps the half-size greys: a similarity or affine map
    commutes with halving both images but for its shift (a float64 copy; ``transform`` is kept)."""
    half = np.array(transform, dtype=np.float64)
    half[:, 2] /= 2.0
    return half


def _fit(kp_a, des_a, kp_b, des_b):
    """(inliers, 2x3 transform A->B or None); an inlier counts once per keypoint of B, since many
    corners of A matched to one corner of B fit a degenerate transform."""
    import cv2

    if des_a is None or des_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return 0, None
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    good = []
    for pair in matcher.knnMatch(des_a, des_b, k=2):
        if len(pair) == 2 and pair[0].distance < RATIO_TEST * pair[1].distance:
            good.append(pair[0])
    if len(good) < 4:
        return 0, None
    src = np.float32([kp_a[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    dst = np.float32([kp_b[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    transform, mask = ransac_fit(src, dst)
    if transform is None or mask is None:
        return 0, None
    return len({m.trainIdx for m, ok in zip(good, mask.ravel()) if ok}), transform


def _half(gray):
    """The grey image the dense check correlates: half the working size is enough and keeps the
    features of a catalog image small."""
    import cv2

    return cv2.resize(gray, (max(1, gray.shape[1] // 2), max(1, gray.shape[0] // 2)), interpolation=cv2.INTER_AREA)


def _ncc(gray_a, gray_b, transform) -> float:
    """Normalised cross-correlation of A warped onto B and B (half-size greys), over their overlap
    (-1: none); ``transform`` maps full working-size A to B."""
    import cv2

    if transform is None or gray_a is None or gray_b is None:
        return -1.0
    transform = at_half_size(transform)
    h, w = gray_b.shape
    warped = cv2.warpAffine(gray_a, transform, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.ones_like(gray_a), transform, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
    if valid.sum() < 64:
        return -1.0
    x = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), NCC_BLUR)[valid]
    y = cv2.GaussianBlur(gray_b.astype(np.float32), (0, 0), NCC_BLUR)[valid]
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / max(float(np.sqrt((x * x).sum() * (y * y).sum())), 1e-6))


@dataclass(frozen=True)
class LocalFeatures:
    """ORB keypoints of one image and of its mirror, and the grey image the fit is checked on:
    computed once, matched against many."""

    keypoints: tuple
    descriptors: np.ndarray | None
    mirror_keypoints: tuple
    mirror_descriptors: np.ndarray | None
    gray: np.ndarray | None = None  # CLAHE grey at MAX_SIDE / 2 for the dense check (None: none)
    _coarse: LocalFeatures | None = field(default=None, init=False, compare=False, repr=False)

    def coarse(self, *, with_mirror: bool) -> LocalFeatures:
        """This image's coarse corners for the second look (``coarse_features``), made on first use
        and kept with the features: a search query or a cached catalog image is matched many times.
        No lock (``functools.cached_property`` holds one per class in Python 3.11, which would put
        every thread's second look in one line): a race computes them twice, harmlessly."""
        known = self._coarse
        if known is None or (with_mirror and known.mirror_descriptors is None):
            known = coarse_features(self, with_mirror=with_mirror)
            object.__setattr__(self, "_coarse", known)  # a cache, not state: the features stay frozen
        return known


def local_features(image: Image.Image, *, with_mirror: bool = True, max_side: int = MAX_SIDE,
                   n_features: int = N_FEATURES) -> LocalFeatures:
    gray = _gray(image, max_side)
    kp, des = _features(gray, n_features)
    if not with_mirror:
        return LocalFeatures(kp, des, (), None, _half(gray))
    kp_m, des_m = _features(np.ascontiguousarray(gray[:, ::-1]), n_features)
    return LocalFeatures(kp, des, kp_m, des_m, _half(gray))


def load_features(source, limits=None, *, max_side: int = MAX_SIDE,  # noqa: ANN001 - anything load_image reads
                  n_features: int = N_FEATURES) -> LocalFeatures:
    from lookalike.imaging import DEFAULT_LIMITS, load_image

    image = source if isinstance(source, Image.Image) else load_image(source, limits or DEFAULT_LIMITS,
                                                                       draft_side=max_side)
    return local_features(image, max_side=max_side, n_features=n_features)


def match_features(a: LocalFeatures, b: LocalFeatures, *, second_look: bool = True,
                   mirror: bool = True, unmirrored: GeometryResult | None = None) -> GeometryResult:
    """How much of A maps onto B (or onto B mirrored, when B's mirror was computed and ``mirror``),
    and how well the pixels line up under that fit (the orientation that lines up best wins).

    A blurred or heavily compressed copy keeps few of the fine corners ORB finds on the original,
    so when the first fit does not line the pixels up, a second look matches coarse corners of both
    images (``coarse_features``). It counts only when its fit lines the pixels up as a copy
    (``ALIGNED``), so it can confirm a copy but never argue against one. ``unmirrored``: this
    pair's unmirrored, first-look result when already known (catalog search has it), not redone.
    """
    first = _match(a, b, mirror, unmirrored)
    return second_look_at(a, b, first, mirror=mirror) if second_look else first


def second_look_at(a: LocalFeatures, b: LocalFeatures, first: GeometryResult, *, mirror: bool = True) -> GeometryResult:
    """``first`` (the fine-corner result), or the coarse-corner result where only that one lines
    the pixels up as a copy."""
    if lines_up(first) or a.gray is None or b.gray is None:
        return first
    second = _match(a.coarse(with_mirror=False), b.coarse(with_mirror=mirror and b.mirror_descriptors is not None),
                    mirror)
    return second if lines_up(second) else first


def coarse_features(features: LocalFeatures, *, with_mirror: bool = True) -> LocalFeatures:
    """ORB keypoints of the image with its fine detail blurred away, at a low corner threshold:
    the corners a blurred, downscaled or blocky-JPEG copy still shares with its original. Made
    from the half-size grey the features already hold (the blur removes what halving lost)."""
    import cv2

    gray = features.gray
    if gray is None:
        raise ValueError("coarse corners are made from the features' grey image, and these have none")
    sigma, threshold = SECOND_LOOK
    big = cv2.GaussianBlur(cv2.resize(gray, (gray.shape[1] * 2, gray.shape[0] * 2), interpolation=cv2.INTER_LINEAR),
                           (0, 0), sigma)
    orb = cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=threshold)
    kp, des = orb.detectAndCompute(big, None)
    if not with_mirror:
        return LocalFeatures(kp, des, (), None, gray)
    kp_m, des_m = orb.detectAndCompute(np.ascontiguousarray(big[:, ::-1]), None)
    return LocalFeatures(kp, des, kp_m, des_m, gray)


def lines_up(result: GeometryResult) -> bool:
    """The fit lines the pixels up as only a copy does (see ``ALIGNED``)."""
    return any(_meets(result, rule) for rule in (ALIGNED, ALIGNED_MANY))


def frame_overlap(shape_a: tuple[int, ...], shape_b: tuple[int, ...], transform) -> tuple[float, float]:  # noqa: ANN001 - 2x3 or None
    """(cover, share) of the two frames under ``transform`` (A -> B, at the full working size;
    ``shape_a``/``shape_b``: the half-size greys' shapes, as ``_ncc`` takes them), each in [0, 1]
    ((0, 0): no fit). ``cover``: the overlap of A's mapped frame and B's frame as a share of the
    smaller of the two, how wholly one image's frame lies inside the other. ``share``: the overlap
    as a share of the larger, how much of the bigger picture the pair has in common.

    An edited copy's content lies (nearly) wholly inside the other image: a crop, a resize, a flip, a
    border or caption, a quarter turn, a turn on an expanded canvas cover 0.91-1.0; a turn with filled
    corners inside the same frame 0.79-0.86. Overlapping frames of a panorama, or two shots of a
    planar scene from another spot, share only part of their frames (0.57-0.6 measured; the
    ``comparison.MIN_COVER`` line). A crop keeping 55-65 % of each side shares 0.30-0.42 of the
    original; a close-up of a product's detail maps into a small part of the whole shot (0.16
    measured; the ``comparison.MIN_SHARE`` line)."""
    import cv2

    if transform is None:
        return 0.0, 0.0
    t = at_half_size(transform)
    (ha, wa), (hb, wb) = shape_a[:2], shape_b[:2]
    corners = np.array([[0, 0], [wa, 0], [wa, ha], [0, ha]], dtype=np.float64)
    mapped = (corners @ t[:, :2].T + t[:, 2]).astype(np.float32)
    mapped_area = abs(float(cv2.contourArea(mapped)))
    if mapped_area <= 0 or wb * hb <= 0:
        return 0.0, 0.0
    frame = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], dtype=np.float32)
    overlap, _ = cv2.intersectConvexConvex(mapped, frame)
    areas = (mapped_area, float(wb * hb))
    return float(min(1.0, overlap / min(areas))), float(min(1.0, overlap / max(areas)))


def _meets(result: GeometryResult, rule: tuple[int, float]) -> bool:
    """At least ``rule`` = (inliers, NCC) of evidence that the fit lines the pixels up."""
    min_inliers, min_ncc = rule
    return result.ncc is not None and result.inliers >= min_inliers and result.ncc >= min_ncc


def _match(a: LocalFeatures, b: LocalFeatures, mirror: bool = True,
           unmirrored: GeometryResult | None = None) -> GeometryResult:
    n = max(1, min(len(a.keypoints), len(b.keypoints)))
    dense = a.gray is not None and b.gray is not None
    tries = [(False, b.keypoints, b.descriptors, b.gray)]
    if mirror and b.mirror_descriptors is not None:
        tries.append((True, b.mirror_keypoints, b.mirror_descriptors,
                      np.ascontiguousarray(b.gray[:, ::-1]) if dense else None))
    best = None
    for flipped, kp_b, des_b, gray_b in tries:
        if not flipped and unmirrored is not None:
            result = unmirrored
        else:
            inliers, transform = _fit(a.keypoints, a.descriptors, kp_b, des_b)
            ncc = _ncc(a.gray, gray_b, transform) if dense else None
            cover, share = frame_overlap(a.gray.shape, gray_b.shape, transform) if dense else (None, None)
            result = GeometryResult(inliers, n, inliers / n, flipped, ncc, cover, share)
        key = (result.ncc if result.ncc is not None else 0.0, result.inliers)
        if best is None or key > best[0]:
            best = (key, result)
        if _meets(result, ALIGNED):
            break  # already lines up as a copy: the mirror cannot change the verdict, skip its fit
    return best[1]


def geometric_check(a: Image.Image, b: Image.Image, *, try_flip: bool = True) -> GeometryResult:
    """How much of A maps onto B (or onto B mirrored) by one similarity transform."""
    from lookalike.parallel import side_by_side

    # OpenCV releases the GIL: the two images' keypoints are found on two cores
    features_a, features_b = side_by_side(lambda: local_features(a, with_mirror=False),
                                          lambda: local_features(b, with_mirror=try_flip))
    return match_features(features_a, features_b)


# Chosen on the DEV pairs' copies, the generated harder copies and the DEV groups' other shots
# (benchmarks/results/accuracy.md, "tiers"): between the similar and match lines a copy must show
# strong geometric evidence; above the match line weaker evidence suffices.
STRONG = (0.10, 12)  # (min ratio, min inliers)
WEAK = (0.08, 8)
# The dense check (benchmarks/research/accuracy_local.py; chosen on half of the originals/groups, held on the
# other half): keypoint evidence counts only where the pixels line up at least this well (overlapping
# shots of a planar scene fit a transform but do not correlate) ...
MIN_NCC = 0.5
# ... and pixels that line up this well after a fit on a few corners are a copy whatever the
# keypoint share (small, low-quality or blurred copies), down to FLOOR below the similar line.
ALIGNED = (6, 0.8)  # (min inliers, min NCC)
ALIGNED_MANY = (15, 0.6)  # more corners fit: a caption or heavy JPEG may lower the correlation more
FLOOR = 0.04
# The second look for degraded copies (``coarse_features``): Gaussian sigma in px at MAX_SIDE and
# ORB's FAST threshold (benchmarks/research/second_look.py: chosen on split A, held on split B).
SECOND_LOOK = (3.0, 3)


def needs_check(score: float, thresholds, tier: Tier) -> bool:
    """Whether the geometric check may change this tier: not for ``exact``, nor for ``different``
    more than ``FLOOR`` below the similar line; for everything else (copy or shot?) it decides."""
    if tier is Tier.EXACT:
        return False
    return tier is not Tier.DIFFERENT or score >= thresholds.similar - FLOOR


def decide_tier(score: float, thresholds, geometry: GeometryResult | None) -> Tier:
    """The tier from the embedding score and, when it was run, the geometric check."""
    tier = thresholds.tier(score)
    if geometry is None or not needs_check(score, thresholds, tier) or (tier is Tier.DIFFERENT and geometry.ncc is None):
        return tier
    keypoints_say_copy = geometry.is_copy(*STRONG) or (score >= thresholds.near_duplicate and geometry.is_copy(*WEAK))
    if geometry.ncc is None:  # no dense check was possible: keypoint evidence alone
        return Tier.NEAR_DUPLICATE if keypoints_say_copy else Tier.SIMILAR
    if lines_up(geometry) or (tier is not Tier.DIFFERENT and keypoints_say_copy and geometry.ncc >= MIN_NCC):
        return Tier.NEAR_DUPLICATE
    return Tier.SIMILAR if tier is not Tier.DIFFERENT else Tier.DIFFERENT


def refine_tier(a, b, score: float, thresholds, tier: Tier, limits=None) -> Tier:
    """The one place the geometric check enters the verdict.

    ``exact`` stands, and so does ``different`` when the score is more than ``FLOOR`` below the
    similar line; otherwise ``decide_tier`` re-decides: an edited copy becomes (or stays)
    ``near_duplicate``, another shot becomes ``similar``. ``a``/``b``: PIL images or anything
    ``imaging.load_image`` reads.
    """
    if not needs_check(score, thresholds, tier):
        return tier
    return decide_tier(score, thresholds, check_images(a, b, limits))


def check_images(a, b, limits=None) -> GeometryResult:  # noqa: ANN001 - see below
    """``geometric_check`` of two PIL images or anything ``imaging.load_image`` reads (decoded at
    ``MAX_SIDE``): the evidence compare's tier rules judge (``refine_tier``, ``comparison.copy_check``)."""
    from lookalike.imaging import DEFAULT_LIMITS, load_image

    images = [x if isinstance(x, Image.Image) else load_image(x, limits or DEFAULT_LIMITS, draft_side=MAX_SIDE)
              for x in (a, b)]
    return geometric_check(*images)


# Re-ranking search results (benchmarks/research/results/accuracy_local.md, part A): inliers of the fitted
# transform are evidence of the same object even between shots (shared texture, print, labels),
# which the global embedding alone ranks poorly. Capped, so one richly textured look-alike cannot
# jump far ahead; 0 inliers leaves the cosine as it was. The order uses the unmirrored fit only
# (no mirror, no second look): a mirror try lends symmetric unrelated objects inliers (DEV groups
# R@1 0.593 with it, 0.607 without, on both halves of the groups) and doubles the matching cost.
RERANK_INLIER_CAP = 40  # for 500 x 300 corners (100 went with 1000 x 1000; benchmarks/results/search_rerank.md)


def rerank_key(cosine: float, inliers: int | None) -> float:
    """Order key of a search result: its cosine plus min(inliers, cap) / cap of local evidence
    (``inliers`` None: not fitted, the cosine alone)."""
    if inliers is None:
        return cosine
    return cosine + min(inliers, RERANK_INLIER_CAP) / RERANK_INLIER_CAP


# --- stored features and the batched verifier (catalog search, issue 13) ----------------------
# A catalog keeps each image's local features (``features_for``), so a search decodes and finds
# corners of the query only. Keypoints are stored strongest first (ORB's Harris response); the
# re-rank matches the strongest ``RERANK_KEYPOINTS`` of every candidate against the query's
# strongest ``RERANK_QUERY_KEYPOINTS`` in one FAISS binary search (``reverse_ratio_matches``),
# and fits a transform only where the matches could change the top k (``rerank_fits``); the
# tier check reuses that fit and fits other tries only where enough matches exist to change a
# verdict (``check_copy``). Mirrored tries mirror the query (once per search) instead of every
# stored image, which halves what a catalog stores. Fewer corners lose some evidence; the
# inlier cap is scaled to them (benchmarks/results/search_rerank.md measures each variant).
FEATURES_MAGIC = b"LKF2"  # LKF1 also stored coarse corners; its rows are recomputed, not misread
STORED_FINE = 300  # fine corners found and kept per catalog image (ORB asked for this many, strongest first)
STORED_FAST_THRESHOLD = 20  # ORB's corner threshold for them: 300 strong corners need no weak candidates,
# and scoring fewer saves ~0.6 ms an image (DEV groups recall unchanged: benchmarks/results/search_rerank.md)
STORED_COARSE = 300  # coarse corners (second look) made from the stored grey when a tier check needs them
RERANK_KEYPOINTS = 300  # catalog-side corners the re-rank matches (benchmarks/results/search_rerank.md)
RERANK_QUERY_KEYPOINTS = 500  # query-side corners the re-rank matches (ORB asked for this many)
GRAY_JPEG_QUALITY = 95  # the dense check blurs (NCC_BLUR) before correlating: JPEG at 95 moves NCC by < 0.01
XY_SCALE = 32.0  # keypoint coordinates stored as uint16 in 1/32 px at MAX_SIDE
TIER_KEYPOINTS = 300  # corners per side the search's tier check matches


@dataclass(frozen=True)
class KeypointSet:
    """Keypoint positions (at ``MAX_SIDE``) and ORB descriptors, strongest first."""

    xy: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray  # (n, 32) uint8

    def __len__(self) -> int:
        return len(self.xy)

    def head(self, n: int) -> KeypointSet:
        return self if len(self) <= n else KeypointSet(self.xy[:n], self.descriptors[:n])

    @classmethod
    def empty(cls) -> KeypointSet:
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))

    @classmethod
    def from_orb(cls, keypoints, descriptors, limit: int | None = None) -> KeypointSet:  # noqa: ANN001
        if descriptors is None or not keypoints:
            return cls.empty()
        order = np.argsort([-kp.response for kp in keypoints], kind="stable")[:limit]
        xy = np.float32([keypoints[i].pt for i in order]).reshape(-1, 2)
        return cls(xy, np.ascontiguousarray(descriptors[order]))


def _orb_set(gray: np.ndarray, n: int, fast_threshold: int = 10) -> KeypointSet:
    """The ``n`` corners ORB keeps (``_features``' settings), strongest first. Asking ORB for the
    corners kept, not 1000 of which the strongest are kept, saves its Harris, angle and
    descriptor work on the rest (benchmarks/results/search_rerank.md: recall and agreement)."""
    import cv2

    orb = cv2.ORB_create(nfeatures=n, fastThreshold=fast_threshold)
    return KeypointSet.from_orb(*orb.detectAndCompute(gray, None))


def _coarse_orb(half_gray: np.ndarray):  # noqa: ANN202 - (keypoints, descriptors) of the blurred image
    """What ``coarse_features`` finds: ORB at a low corner threshold on the blurred, re-enlarged grey."""
    import cv2

    sigma, threshold = SECOND_LOOK
    big = cv2.GaussianBlur(cv2.resize(half_gray, (half_gray.shape[1] * 2, half_gray.shape[0] * 2),
                                      interpolation=cv2.INTER_LINEAR), (0, 0), sigma)
    return big, cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=threshold)


def _coarse_set(half_gray: np.ndarray, n: int, *, mirrored: bool = False) -> KeypointSet:
    """The ``n`` strongest coarse corners (``coarse_features``' settings) of a half-size grey."""
    big, orb = _coarse_orb(half_gray)
    orb.setMaxFeatures(n)
    if mirrored:
        big = np.ascontiguousarray(big[:, ::-1])
    return KeypointSet.from_orb(*orb.detectAndCompute(big, None))


class StoredFeatures:
    """A catalog image's local features as stored: its fine corners and the half-size grey image
    the dense check correlates (JPEG, decoded only when a tier check needs it). The coarse corners
    of the second look are made from that grey on first use (``coarse``): only a hit whose fine
    corners do not line it up as a copy needs them, so indexing does not pay for every image's.
    Safe to share between threads (a race makes a lazy part twice, harmlessly)."""

    __slots__ = ("fine", "gray_jpeg", "_coarse", "_gray", "coarse_made")

    def __init__(self, fine: KeypointSet, coarse: KeypointSet | None, gray_jpeg: bytes) -> None:
        self.fine = fine
        self.gray_jpeg = gray_jpeg
        self._coarse = coarse  # None: not made yet
        self._gray: np.ndarray | None = None
        self.coarse_made = False  # made here from the grey (not stored with the rest): worth storing

    @property
    def coarse(self) -> KeypointSet:
        """The ``STORED_COARSE`` strongest coarse corners, made from the grey on first use."""
        if self._coarse is None:
            self._coarse = _coarse_set(self.gray, STORED_COARSE)
            self.coarse_made = True
        return self._coarse

    @property
    def gray(self) -> np.ndarray:
        """Decoded on first use (only a fit with enough inliers to matter is checked densely)."""
        import cv2

        if self._gray is None:
            self._gray = cv2.imdecode(np.frombuffer(self.gray_jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        return self._gray


def features_for(image: Image.Image) -> bytes:
    """The local features a catalog stores for one image (~20 KB on the DEV photos): the hook every
    ingestion path calls with the image it decoded for the embedder, so search never decodes a hit
    again. One ORB pass for the ``STORED_FINE`` corners kept and the grey image (~3.5 ms a DEV photo
    on one core; the coarse corners were a second pass and now wait for a search that needs them)."""
    import cv2

    gray = _gray(image)
    ok, encoded = cv2.imencode(".jpg", _half(gray), [cv2.IMWRITE_JPEG_QUALITY, GRAY_JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 grey image
        raise ValueError("could not encode the grey image")
    return pack_features(StoredFeatures(_orb_set(gray, STORED_FINE, STORED_FAST_THRESHOLD), None, encoded.tobytes()))


def pack_features(features: StoredFeatures) -> bytes:
    """Magic, two uint16 counts (fine, coarse: 0 when the coarse corners are not stored), per set
    uint16 positions and 32-byte descriptors, then the grey JPEG."""
    sets = [features.fine] + ([features._coarse] if features._coarse is not None else [])
    parts = [FEATURES_MAGIC, np.array([len(features.fine), len(sets[1]) if len(sets) > 1 else 0], "<u2").tobytes()]
    for keys in sets:
        parts.append(np.clip(np.round(keys.xy * XY_SCALE), 0, 65535).astype("<u2").tobytes())
        parts.append(keys.descriptors.astype(np.uint8).tobytes())
    parts.append(features.gray_jpeg)
    return b"".join(parts)


def unpack_features(blob: bytes) -> StoredFeatures:
    """``features_for``'s bytes back (views into ``blob``, no copies). A blob of another format
    (``FEATURES_MAGIC``) raises ValueError: the store treats it as missing and recomputes it."""
    if blob[:4] != FEATURES_MAGIC:
        raise ValueError("not a lookalike local-features blob of this version")
    counts = np.frombuffer(blob, "<u2", 2, 4)
    offset, sets = 8, []
    for n in counts.tolist():
        xy = np.frombuffer(blob, "<u2", 2 * n, offset).reshape(n, 2).astype(np.float32) / XY_SCALE
        offset += 4 * n
        descriptors = np.frombuffer(blob, np.uint8, 32 * n, offset).reshape(n, 32)
        offset += 32 * n
        sets.append(KeypointSet(xy, descriptors))
    return StoredFeatures(sets[0], sets[1] if counts[1] else None, bytes(blob[offset:]))


def _mirrored_set(gray: np.ndarray, keypoints: list) -> KeypointSet:
    """The corners ORB finds on the mirrored image, from those it found on the image: FAST and
    Harris are mirror-symmetric, so a corner at (x, y) with orientation t is found at (w - 1 - x, y)
    with orientation 180 - t, and only its descriptor is new: ORB computes it there without a
    detection pass (~1.2 ms instead of ~3.7 ms a DEV photo; where both passes find a corner at the
    same place and scale the descriptors are bit for bit the same)."""
    import cv2

    if not keypoints:
        return KeypointSet.empty()
    width = gray.shape[1]
    mirrored = [cv2.KeyPoint(width - 1 - kp.pt[0], kp.pt[1], kp.size, (180.0 - kp.angle) % 360.0, kp.response,
                             kp.octave, kp.class_id) for kp in keypoints]
    orb = cv2.ORB_create(nfeatures=len(mirrored), fastThreshold=10)
    found, descriptors = orb.compute(np.ascontiguousarray(gray[:, ::-1]), mirrored)
    return KeypointSet.from_orb(found, descriptors)


class QueryFeatures:
    """A search query's features: its ``RERANK_QUERY_KEYPOINTS`` fine corners at once; the
    mirrored and coarse corners (the tier check's other tries, ``TIER_KEYPOINTS`` each) the first
    time a candidate needs them, then kept for the others."""

    def __init__(self, image: Image.Image) -> None:
        import cv2

        self._gray = _gray(image)
        keypoints, descriptors = cv2.ORB_create(nfeatures=RERANK_QUERY_KEYPOINTS, fastThreshold=10).detectAndCompute(
            self._gray, None)
        self.fine = KeypointSet.from_orb(keypoints, descriptors)
        self._strongest = sorted(keypoints, key=lambda kp: -kp.response)[:TIER_KEYPOINTS]  # for the mirror
        self.gray = _half(self._gray)
        self._cache: dict[str, object] = {}
        self._locks = {name: threading.Lock() for name in ("fine_mirror", "gray_mirror", "coarse_False", "coarse_True")}

    def _get(self, name: str, make):  # noqa: ANN001, ANN202
        """One lock per part: two threads checking hits make different parts at once, and wait for
        a part the other is making instead of making it twice."""
        with self._locks[name]:
            if name not in self._cache:
                self._cache[name] = make()
            return self._cache[name]

    @property
    def fine_mirror(self) -> KeypointSet:
        return self._get("fine_mirror", lambda: _mirrored_set(self._gray, self._strongest))

    @property
    def gray_mirror(self) -> np.ndarray:
        return self._get("gray_mirror", lambda: np.ascontiguousarray(self.gray[:, ::-1]))

    def coarse(self, mirrored: bool) -> KeypointSet:
        return self._get(f"coarse_{mirrored}", lambda: _coarse_set(self.gray, TIER_KEYPOINTS, mirrored=mirrored))


@dataclass(frozen=True)
class Matches:
    """Ratio-tested matches query -> one candidate (indices into each side's keypoints)."""

    query: np.ndarray
    candidate: np.ndarray

    @property
    def bound(self) -> int:
        """The most inliers any fit of these matches can have (inliers count once per candidate keypoint)."""
        return len(np.unique(self.candidate))


def ratio_matches(query: KeypointSet, candidates: list[KeypointSet]) -> list[Matches]:
    """Lowe-ratio-tested nearest neighbours of the query's descriptors in each candidate (the
    matching ``_fit`` does), one OpenCV brute-force Hamming matcher per candidate."""
    empty = Matches(np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(query) < 2:
        return [empty for _ in candidates]
    return _match_each(query, candidates)


def reverse_ratio_matches(query: KeypointSet, candidates: list[KeypointSet], *, split: bool = True) -> list[Matches]:
    """Ratio-tested matches from each candidate keypoint to its nearest query keypoint, for all
    candidates at once against the query's few hundred descriptors.

    The re-rank's matcher: the query side is one small set, so every candidate keypoint's two
    nearest query keypoints come from one distance table (``_two_nearest``). Each candidate
    keypoint matches at most once, so the count of matches bounds the inliers. ``split``: the
    table in two halves on two cores (``parallel.side_by_side``); a caller that already runs
    its matches in threads (dedup) passes False, so the halves do not queue for the shared pool.
    """
    empty = Matches(np.zeros(0, np.int64), np.zeros(0, np.int64))
    sizes = np.array([len(c) for c in candidates], dtype=np.int64)
    if len(query) < 2 or sizes.sum() == 0:
        return [empty for _ in candidates]
    stacked = np.concatenate([c.descriptors for c in candidates if len(c)])
    query_descriptors = np.ascontiguousarray(query.descriptors)
    if split:
        half = len(stacked) // 2
        from lookalike.parallel import side_by_side

        (d1, e1, i1), (d2, e2, i2) = side_by_side(lambda: _two_nearest(stacked[:half], query_descriptors),
                                                  lambda: _two_nearest(stacked[half:], query_descriptors))
        first, second, nearest = np.concatenate([d1, d2]), np.concatenate([e1, e2]), np.concatenate([i1, i2])
    else:
        first, second, nearest = _two_nearest(stacked, query_descriptors)
    good = first < RATIO_TEST * second
    out, start = [], 0
    for n in sizes.tolist():
        rows = np.flatnonzero(good[start : start + n])
        out.append(Matches(nearest[start + rows].astype(np.int64), rows.astype(np.int64)))
        start += n
    return out


_BLOCK = 1024  # candidate descriptors per distance table (1024 x 500 int32 stays in the CPU cache)


def _two_nearest(rows: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nearest distance, second-nearest distance, index of the nearest: the first of equals) in
    ``table`` (binary descriptors) for each row: FAISS's SIMD Hamming distances for a block of
    rows at once, then NumPy's argmin and min per row. About 2x less CPU than FAISS's own k-NN,
    whose per-row heap costs more than the distances (the issue's "NumPy popcount" idea;
    benchmarks/results/search_rerank.md times the re-rank)."""
    import faiss

    n, m = len(rows), len(table)
    d1, d2, i1 = np.full(n, 1 << 20, np.int32), np.full(n, 1 << 20, np.int32), np.zeros(n, np.int64)
    if n == 0 or m == 0:  # nothing to match: no distance passes a ratio test
        return d1, d2, i1
    rows = np.ascontiguousarray(rows)
    buffer = np.empty((min(_BLOCK, n), m), np.int32)
    for start in range(0, n, _BLOCK):
        count = min(_BLOCK, n - start)
        distances, at = buffer[:count], np.arange(count)
        faiss.hammings(faiss.swig_ptr(rows[start : start + count]), faiss.swig_ptr(table), count, m, 32,
                       faiss.swig_ptr(distances))
        nearest = distances.argmin(axis=1)
        d1[start : start + count] = distances[at, nearest]
        i1[start : start + count] = nearest
        if m > 1:
            distances[at, nearest] = 1 << 20
            d2[start : start + count] = distances.min(axis=1)
    return d1, d2, i1


def forward_ratio_matches(query: KeypointSet, candidate: KeypointSet) -> Matches:
    """``ratio_matches`` for one candidate of at most 512 corners, from one Hamming distance table
    (``_two_nearest``) instead of OpenCV's matcher and its per-match Python objects (~2.4x less
    time for 300 x 300 DEV corners); the same matches: a tie for the nearest fails the ratio test."""
    if len(query) < 2 or len(candidate) < 2:
        return Matches(np.zeros(0, np.int64), np.zeros(0, np.int64))
    first, second, nearest = _two_nearest(query.descriptors, np.ascontiguousarray(candidate.descriptors))
    rows = np.flatnonzero(first < RATIO_TEST * second)
    return Matches(rows.astype(np.int64), nearest[rows].astype(np.int64))


def _match_each(query: KeypointSet, candidates: list[KeypointSet]) -> list[Matches]:
    import cv2

    empty = Matches(np.zeros(0, np.int64), np.zeros(0, np.int64))
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    out = []
    for candidate in candidates:
        if len(candidate) < 2:
            out.append(empty)
            continue
        q_idx, c_idx = [], []
        for pair in matcher.knnMatch(query.descriptors, candidate.descriptors, k=2):
            if len(pair) == 2 and pair[0].distance < RATIO_TEST * pair[1].distance:
                q_idx.append(pair[0].queryIdx)
                c_idx.append(pair[0].trainIdx)
        out.append(Matches(np.asarray(q_idx, np.int64), np.asarray(c_idx, np.int64)))
    return out


def fit_matches(query_xy: np.ndarray, candidate_xy: np.ndarray, matches: Matches):  # noqa: ANN201
    """(inliers, 2x3 transform query->candidate or None): ``_fit``'s RANSAC on given matches."""

    if len(matches.query) < 4:
        return 0, None
    src = query_xy[matches.query].reshape(-1, 1, 2)
    dst = candidate_xy[matches.candidate].reshape(-1, 1, 2)
    transform, mask = ransac_fit(src, dst)
    if transform is None or mask is None:
        return 0, None
    return len(np.unique(matches.candidate[mask.ravel().astype(bool)])), transform


@dataclass(frozen=True)
class Fit:
    """One fitted orientation: inliers and the query->candidate transform (None: no fit)."""

    inliers: int
    transform: np.ndarray | None = None


def rerank_fits(query: QueryFeatures, candidates: list[StoredFeatures | None], cosines: list[float],
                keep: int) -> list[Fit | None]:
    """The unmirrored fine fit (no mirror, no second look) per candidate, computed only where it could
    change which ``keep`` candidates lead by ``rerank_key`` and their order.

    Candidates are fitted in order of their best possible key (cosine + capped match bound);
    once ``keep`` exact keys beat the next bound, no later candidate can reach the head, and
    those are returned as ``None`` (not verified). Fewer than 4 matches fit nothing: 0 inliers.
    """
    q = query.fine.head(RERANK_QUERY_KEYPOINTS)
    heads = [c.fine.head(RERANK_KEYPOINTS) if c is not None else KeypointSet.empty() for c in candidates]
    matches = reverse_ratio_matches(q, heads)
    cap = RERANK_INLIER_CAP
    bounds = [cos + min(m.bound if len(m.query) >= 4 else 0, cap) / cap for cos, m in zip(cosines, matches)]
    order = sorted(range(len(candidates)), key=lambda i: (-bounds[i], i))
    fits: list[Fit | None] = [None] * len(candidates)
    keys: list[float] = []
    for i in order:
        if candidates[i] is None:
            continue
        if len(keys) >= keep and sorted(keys, reverse=True)[keep - 1] > bounds[i]:
            break  # no candidate left can enter the head
        fits[i] = Fit(*fit_matches(q.xy, heads[i].xy, matches[i])) if len(matches[i].query) >= 4 else Fit(0)
        keys.append(cosines[i] + min(fits[i].inliers, cap) / cap)
    return fits


class _LazyGray:
    """A candidate's grey image, decoded only if a fit needs the dense check."""

    def __init__(self, candidate: StoredFeatures) -> None:
        self.candidate = candidate

    def get(self) -> np.ndarray:
        return self.candidate.gray


def _tried(query_keys: KeypointSet, candidate_keys: KeypointSet, query_gray, candidate_gray,  # noqa: ANN001
           flipped: bool, n: int) -> GeometryResult:
    """One orientation of the copy check; no fit where too few matches exist to matter."""
    matches = forward_ratio_matches(query_keys, candidate_keys)
    if matches.bound < ALIGNED[0]:  # fewer inliers than any copy rule asks for: the verdict cannot change
        return GeometryResult(0, n, 0.0, flipped, -1.0)
    inliers, transform = fit_matches(query_keys.xy, candidate_keys.xy, matches)
    if inliers < ALIGNED[0]:
        return GeometryResult(inliers, n, inliers / n, flipped, -1.0)
    if isinstance(candidate_gray, _LazyGray):
        candidate_gray = candidate_gray.get()
    return GeometryResult(inliers, n, inliers / n, flipped, _ncc(query_gray, candidate_gray, transform))


def check_copy(query: QueryFeatures, candidate: StoredFeatures, first: Fit | None = None, *,
               keypoints: int | None = None, other_tries: bool = True,
               settled: Callable[[GeometryResult], bool] | None = None) -> GeometryResult:
    """``match_features`` (both orientations, second look) from stored features: the evidence
    ``decide_tier`` judges, with the mirror tried on the query side. ``first``: the unmirrored
    fine fit on the same corners when the re-rank already made it. ``other_tries=False``: the
    unmirrored fine fit only (search skips the mirror and the second look below the
    near-duplicate line, where on the DEV pairs they never changed a verdict:
    benchmarks/results/search_rerank.md). ``settled(evidence)``: whether the caller's verdict on
    the fine-corner evidence is already a copy; the second look, which can only confirm a copy
    (``second_look_at``), is then skipped, since it cannot change that verdict."""
    keypoints = keypoints or TIER_KEYPOINTS
    gray = _LazyGray(candidate)
    q_fine, c_fine = query.fine.head(keypoints), candidate.fine.head(keypoints)
    n = max(1, min(len(q_fine), len(c_fine)))
    if first is not None:
        best = GeometryResult(first.inliers, n, first.inliers / n, False,
                              _ncc(query.gray, gray.get(), first.transform) if first.inliers >= ALIGNED[0] else -1.0)
    else:
        best = _tried(q_fine, c_fine, query.gray, gray, False, n)
    if not other_tries:
        return best
    if not _meets(best, ALIGNED):
        mirrored = _tried(query.fine_mirror.head(keypoints), c_fine, query.gray_mirror, gray, True, n)
        if (mirrored.ncc, mirrored.inliers) > (best.ncc, best.inliers):
            best = mirrored
    if lines_up(best) or (settled is not None and settled(best)):
        return best
    # the second look tries one orientation, the one the fine corners favoured: trying the other
    # one too (a third and fourth ORB pass on the query) changed no verdict on 2,024 checked pairs
    # (DEV, the harder edits, turned copies, other shots: benchmarks/research/tier_check_changes.py, results/second_look_orientation.md)
    flipped = best.flipped
    q_coarse, c_coarse = query.coarse(flipped).head(keypoints), candidate.coarse.head(keypoints)
    nc = max(1, min(len(q_coarse), len(c_coarse)))
    second = _tried(q_coarse, c_coarse, query.gray_mirror if flipped else query.gray, gray, flipped, nc)
    return second if lines_up(second) else best
