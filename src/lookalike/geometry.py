"""Is B an edited copy of A, or another shot of the same thing? Local features decide.

A global embedding scores "same object, other photo" about as high as "same photo, edited", so
no single score line separates the two (benchmarks/results/accuracy.md). An edited copy keeps the
pixels' geometry up to a similarity transform (resize, crop, small rotation, padding, mirror);
another shot does not (viewpoint, perspective, lighting). So: ORB keypoints on contrast-normalized
grey images (CLAHE, so brightness/gamma/grey edits keep their corners), ratio-tested matches, and a
RANSAC fit of a 4-degree-of-freedom similarity transform; the share of keypoints that fit it is
the evidence. Mirrored copies are tried too. OpenCV is imported lazily (only when called).

``refine_tier`` is the one place the tier decision uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .similarity import Tier

MAX_SIDE = 384  # enough corners for a copy check; keeps one check ~10-20 ms
N_FEATURES = 1000
RATIO_TEST = 0.8
RANSAC_PX = 6.0  # reprojection tolerance at MAX_SIDE


@dataclass(frozen=True)
class GeometryResult:
    inliers: int
    keypoints: int  # the smaller keypoint count of the two images
    ratio: float  # inliers / keypoints
    flipped: bool  # the best fit was against the mirrored image

    def is_copy(self, min_ratio: float, min_inliers: int) -> bool:
        return self.inliers >= min_inliers and self.ratio >= min_ratio


def _gray(image: Image.Image):
    import cv2

    img = image.convert("L")
    scale = MAX_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR)
    array = np.asarray(img)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(array)


def _features(gray):
    import cv2

    orb = cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=10)
    return orb.detectAndCompute(gray, None)


def _fit(kp_a, des_a, kp_b, des_b) -> int:
    import cv2

    if des_a is None or des_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return 0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    good = []
    for pair in matcher.knnMatch(des_a, des_b, k=2):
        if len(pair) == 2 and pair[0].distance < RATIO_TEST * pair[1].distance:
            good.append(pair[0])
    if len(good) < 4:
        return 0
    src = np.float32([kp_a[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    dst = np.float32([kp_b[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                          maxIters=2000, confidence=0.99)
    return int(mask.sum()) if mask is not None else 0


@dataclass(frozen=True)
class LocalFeatures:
    """ORB keypoints of one image and of its mirror: computed once, matched against many."""

    keypoints: tuple
    descriptors: np.ndarray | None
    mirror_keypoints: tuple
    mirror_descriptors: np.ndarray | None


def local_features(image: Image.Image, *, with_mirror: bool = True) -> LocalFeatures:
    gray = _gray(image)
    kp, des = _features(gray)
    if not with_mirror:
        return LocalFeatures(kp, des, (), None)
    kp_m, des_m = _features(np.ascontiguousarray(gray[:, ::-1]))
    return LocalFeatures(kp, des, kp_m, des_m)


def load_features(source, limits=None) -> LocalFeatures:  # noqa: ANN001 - anything load_image reads
    from .imaging import DEFAULT_LIMITS, load_image

    image = source if isinstance(source, Image.Image) else load_image(source, limits or DEFAULT_LIMITS,
                                                                       draft_side=MAX_SIDE)
    return local_features(image)


def match_features(a: LocalFeatures, b: LocalFeatures) -> GeometryResult:
    """How much of A maps onto B (or onto B mirrored, when B's mirror was computed)."""
    n = max(1, min(len(a.keypoints), len(b.keypoints)))
    inliers = _fit(a.keypoints, a.descriptors, b.keypoints, b.descriptors)
    flipped = False
    if b.mirror_descriptors is not None:
        inliers_f = _fit(a.keypoints, a.descriptors, b.mirror_keypoints, b.mirror_descriptors)
        if inliers_f > inliers:
            inliers, flipped = inliers_f, True
    return GeometryResult(inliers, n, inliers / n, flipped)


def geometric_check(a: Image.Image, b: Image.Image, *, try_flip: bool = True) -> GeometryResult:
    """How much of A maps onto B (or onto B mirrored) by one similarity transform."""
    return match_features(local_features(a, with_mirror=False), local_features(b, with_mirror=try_flip))


# Chosen on the DEV pairs' copies, the generated harder copies and the DEV groups' other shots
# (benchmarks/results/accuracy.md, "tiers"): between the similar and match lines a copy must show
# strong geometric evidence; above the match line weaker evidence suffices.
STRONG = (0.10, 12)  # (min ratio, min inliers)
WEAK = (0.08, 8)


def decide_tier(score: float, thresholds, geometry: GeometryResult | None) -> Tier:
    """The tier from the embedding score and, when it was run, the geometric check."""
    tier = thresholds.tier(score)
    if geometry is None or tier is Tier.DIFFERENT:
        return tier
    if geometry.is_copy(*STRONG) or (score >= thresholds.near_duplicate and geometry.is_copy(*WEAK)):
        return Tier.NEAR_DUPLICATE
    return Tier.SIMILAR


def refine_tier(a, b, score: float, thresholds, tier: Tier, limits=None) -> Tier:
    """The one place the geometric check enters the verdict.

    ``exact`` and ``different`` stand; a ``near_duplicate`` or ``similar`` by score is re-decided
    by ``decide_tier``: an edited copy becomes (or stays) ``near_duplicate``, another shot becomes
    ``similar``. ``a``/``b``: PIL images or anything ``imaging.load_image`` reads.
    """
    if tier in (Tier.EXACT, Tier.DIFFERENT):
        return tier
    from .imaging import DEFAULT_LIMITS, load_image

    images = [x if isinstance(x, Image.Image) else load_image(x, limits or DEFAULT_LIMITS, draft_side=MAX_SIDE)
              for x in (a, b)]
    return decide_tier(score, thresholds, geometric_check(*images))
