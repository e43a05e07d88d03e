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
(benchmarks/accuracy_local.py, benchmarks/results/accuracy_local.md).

Blur and heavy JPEG erase the fine corners the first fit needs; a second look on coarse corners
(both images blurred, low corner threshold) lines such copies up, and counts only when it does
(benchmarks/second_look.py, benchmarks/results/second_look.md).

``refine_tier`` is the one place the tier decision uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                                  maxIters=2000, confidence=0.99)
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
    transform = np.array(transform, dtype=np.float64)
    transform[:, 2] /= 2.0  # a similarity transform commutes with halving both images but for its shift
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
            result = GeometryResult(inliers, n, inliers / n, flipped, ncc)
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
# The dense check (benchmarks/accuracy_local.py; chosen on half of the originals/groups, held on the
# other half): keypoint evidence counts only where the pixels line up at least this well (overlapping
# shots of a planar scene fit a transform but do not correlate) ...
MIN_NCC = 0.5
# ... and pixels that line up this well after a fit on a few corners are a copy whatever the
# keypoint share (small, low-quality or blurred copies), down to FLOOR below the similar line.
ALIGNED = (6, 0.8)  # (min inliers, min NCC)
ALIGNED_MANY = (15, 0.6)  # more corners fit: a caption or heavy JPEG may lower the correlation more
FLOOR = 0.04
# The second look for degraded copies (``coarse_features``): Gaussian sigma in px at MAX_SIDE and
# ORB's FAST threshold (benchmarks/second_look.py: chosen on split A, held on split B).
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
    from lookalike.imaging import DEFAULT_LIMITS, load_image

    images = [x if isinstance(x, Image.Image) else load_image(x, limits or DEFAULT_LIMITS, draft_side=MAX_SIDE)
              for x in (a, b)]
    return decide_tier(score, thresholds, geometric_check(*images))


# Re-ranking search results (benchmarks/results/accuracy_local.md, part A): inliers of the fitted
# transform are evidence of the same object even between shots (shared texture, print, labels),
# which the global embedding alone ranks poorly. Capped, so one richly textured look-alike cannot
# jump far ahead; 0 inliers leaves the cosine as it was. The order uses the unmirrored fit only
# (``RERANK_MATCH``): a mirror try lends symmetric unrelated objects inliers (DEV groups R@1 0.593
# with it, 0.607 without, on both halves of the groups) and doubles the matching cost.
RERANK_MATCH = {"second_look": False, "mirror": False}
RERANK_INLIER_CAP = 100


def rerank_score(cosine: float, geometry: GeometryResult | None) -> float:
    """Order key of a search result: its cosine plus min(inliers, cap) / cap of local evidence."""
    if geometry is None:
        return cosine
    return cosine + min(geometry.inliers, RERANK_INLIER_CAP) / RERANK_INLIER_CAP


# Dedup's copy check (``is_edited_copy``): smaller images, fewer corners and no second look make it
# ~3x cheaper than the compare check at the same accuracy on the DEV transformed sets, where the copy
# detector has already sorted out the degraded copies (benchmarks/dedup.py); the pixels must line up
# closely (NCC >= 0.9 over >= 8 fitted corners): look-alike packs and facades fit a transform too,
# but line up less well.
DEDUP_FEATURES = {"max_side": 256, "n_features": 500}
DEDUP_COPY = (8, 0.9)  # (min inliers, min NCC)


def is_edited_copy(a: LocalFeatures, b: LocalFeatures) -> bool:
    """Whether B is an edited copy of A on local evidence alone (no embedding score): a similarity
    transform (any rotation, scale, crop; mirror tried, so a vertical flip is mirror + 180 degrees)
    lines the pixels up (``DEDUP_COPY``). Dedup asks this where a copy detector's score is unsure
    (``lookalike.catalog.dedup``); features from ``load_features(..., **DEDUP_FEATURES)``."""
    return _meets(match_features(a, b, second_look=False), DEDUP_COPY)
