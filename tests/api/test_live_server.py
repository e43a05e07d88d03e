"""The seed's endpoint over a real socket: ``lookalike serve`` on loopback, real photos, real weights."""

from __future__ import annotations

import httpx

from ..server import running_server


def test_seed_endpoint_over_http(settings, photo_pair, sample_flower):
    from ..conftest import jpeg_bytes

    original, edited = photo_pair
    with running_server(settings) as url:
        same = httpx.post(f"{url}/cosine_similarity_score", params={"model_name": "efficientnet_lite0"},
                          files={"image_1": ("a.jpg", original), "image_2": ("b.jpg", edited)}, timeout=60).json()
        other = httpx.post(f"{url}/cosine_similarity_score",
                           files={"image_1": ("a.jpg", original), "image_2": ("c.jpg", jpeg_bytes(sample_flower))},
                           timeout=60).json()
        health = httpx.get(f"{url}/healthz").json()
    assert same["Are the images similar?"] == "Yes" and other["Are the images similar?"] == "No"
    assert "tf_efficientnet_lite0@224" in health["loaded_models"]  # --preload is the default
    assert "sscd_distilled@256" in health["loaded_models"]  # compare's copy detector is preloaded too
