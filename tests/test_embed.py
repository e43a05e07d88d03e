"""The Embedder contract: any source type, one or a batch, L2-normalized float32."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.embed import Embedder, EmbedderPool, Encoder

from .conftest import jpeg_bytes


def test_embedder_meets_the_encoder_protocol(embedder):
    assert isinstance(embedder, Encoder) and isinstance(embedder, Embedder)


def test_one_source_gives_one_vector(embedder, sample_photos):
    vector = embedder.encode(sample_photos["rocket"])
    assert vector.shape == (embedder.dim,)
    assert abs(float(vector @ embedder.encode([sample_photos["rocket"]])[0]) - 1.0) < 1e-5


def test_top_level_python_api(settings, sample_photos):
    import lookalike

    result = lookalike.compare(sample_photos["china"], sample_photos["china"], settings=settings)
    assert result.tier.value == "exact" and result.score > 0.999
    assert lookalike.Embedder.create(settings=settings).dim == 1280


def test_every_source_type_gives_the_same_vector(embedder, sample_photos):
    path = sample_photos["chelsea"]
    data = path.read_bytes()
    image = Image.open(path).convert("RGB")
    vectors = embedder.encode([path, str(path), data, image, np.asarray(image)])
    assert vectors.shape == (5, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors @ vectors[0]).min() > 0.999


def test_batch_equals_one_by_one(embedder, sample_photos):
    photos = list(sample_photos.values())
    batch = embedder.encode(photos)
    singles = np.stack([embedder.encode_one(p) for p in photos])
    assert np.abs(batch - singles).max() < 1e-4


def test_real_weights_tell_photos_apart(embedder, sample_photos, sample_china):
    """An edited copy lands far closer than any other photo (random weights cannot do this)."""
    edited = Image.fromarray(sample_china).crop((30, 20, 600, 400)).resize((400, 266))
    vectors = embedder.encode([sample_photos["china"], jpeg_bytes(edited, quality=50),
                               *[p for n, p in sample_photos.items() if n != "china"]])
    sims = vectors[1:] @ vectors[0]
    assert sims[0] > 0.85
    assert sims[0] - sims[1:].max() > 0.25


def test_pool_loads_once_and_is_bounded(settings):
    pool = EmbedderPool(settings, capacity=1)
    first = pool.get("tf_efficientnet_lite0")
    assert pool.get("efficientnet_lite0") is first  # alias -> same loaded model
    pool.get("tf_efficientnet_lite0", 416)
    assert pool.loaded() == [("tf_efficientnet_lite0", 416)]
