"""What lookalike is measured against, in the same run: pHash and the seed's own method.

- ``phash``: imagehash's 64-bit perceptual hash; similarity = 1 - Hamming / 64.
- ``seed``: what the seed service did: ResNet-18 (or, without its weights, the nearest model with
  real weights: EfficientNet-Lite0), timm's default centre crop, average pooling, (cos+1)/2 and a
  fixed 0.80 threshold.

Every scorer answers the same two questions, so the eval command treats them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from lookalike.config import Settings
from lookalike.errors import InvalidValueError, LookalikeError, WeightsUnavailableError
from lookalike.quality.evaluation import cosine_pair_scores, embed_paths
from lookalike.similarity import Thresholds, normalized_score

SEED_THRESHOLD = 0.80


class Scorer(Protocol):
    name: str
    threshold: float

    def pair_scores(self, path_a: Sequence[Path], path_b: Sequence[Path]) -> np.ndarray: ...

    def similarity_matrix(self, paths: Sequence[Path]) -> np.ndarray: ...


@dataclass
class EmbeddingScorer:
    """A loaded embedder scored as (cos+1)/2."""

    name: str
    embedder: object
    threshold: float

    def pair_scores(self, path_a: Sequence[Path], path_b: Sequence[Path]) -> np.ndarray:
        vectors = embed_paths(self.embedder, [*path_a, *path_b])
        return cosine_pair_scores(vectors, path_a, path_b)

    def similarity_matrix(self, paths: Sequence[Path]) -> np.ndarray:
        vectors = embed_paths(self.embedder, paths)
        emb = np.stack([vectors[str(p)] for p in paths]).astype(np.float64)
        return normalized_score(emb @ emb.T)


def lookalike_scorer(model: str | None, size: int | None, settings: Settings) -> tuple[EmbeddingScorer, Thresholds]:
    """The service's own embedder as a scorer, with the thresholds the service answers at."""
    from lookalike.embed import create_embedder
    from lookalike.similarity import thresholds_for

    embedder = create_embedder(model, input_size=size, settings=settings)
    thresholds = thresholds_for(embedder.model_name, embedder.input_size, settings)
    name = f"lookalike ({embedder.model_name}@{embedder.input_size}, {embedder.preprocessing.mode}, {settings.pooling})"
    return EmbeddingScorer(name, embedder, thresholds.match), thresholds


@dataclass
class PHashScorer:
    name: str = "phash"
    threshold: float = 0.80  # ~ Hamming <= 12 of 64, imagededup's usual cut is 10

    def _hashes(self, paths: Sequence[Path]) -> dict[str, np.ndarray]:
        import imagehash
        from PIL import Image

        out = {}
        for p in dict.fromkeys(str(p) for p in paths):
            with Image.open(p) as img:
                out[p] = np.asarray(imagehash.phash(img.convert("RGB")).hash, dtype=bool).ravel()
        return out

    def pair_scores(self, path_a: Sequence[Path], path_b: Sequence[Path]) -> np.ndarray:
        h = self._hashes([*path_a, *path_b])
        return np.array([1.0 - np.count_nonzero(h[str(a)] != h[str(b)]) / 64.0 for a, b in zip(path_a, path_b)])

    def similarity_matrix(self, paths: Sequence[Path]) -> np.ndarray:
        h = self._hashes(paths)
        bits = np.stack([h[str(p)] for p in paths]).astype(np.int32)
        hamming = bits @ (1 - bits).T + (1 - bits) @ bits.T
        return 1.0 - hamming / 64.0


def seed_scorer(settings: Settings) -> EmbeddingScorer:
    """The seed's method with the best stand-in for its weights that exists here."""
    from lookalike.embed import create_embedder
    from lookalike.models.registry import resolve_model
    from lookalike.models.status import model_status

    for model in ("resnet18", "tf_efficientnet_lite0"):
        if not model_status(resolve_model(model), settings).available:
            continue
        try:
            embedder = create_embedder(model, pooling="avg", preprocess="crop", settings=settings)
        except LookalikeError:
            continue
        return EmbeddingScorer(f"seed ({model}, crop, avg, 0.80)", embedder, SEED_THRESHOLD)
    raise WeightsUnavailableError("no model with weights for the seed baseline")


def baseline_scorer(name: str, settings: Settings) -> Scorer:
    if name == "phash":
        return PHashScorer()
    if name == "seed":
        return seed_scorer(settings)
    raise InvalidValueError(f"unknown baseline {name!r}; choose phash or seed", code="bad_baseline")
