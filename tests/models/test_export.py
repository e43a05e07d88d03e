"""ONNX export: cached on disk, reused, and numerically the same model as torch eager."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.embed import create_embedder
from lookalike.models.export import ensure_onnx
from lookalike.models.registry import resolve_model


@pytest.mark.parametrize("model", ["tf_efficientnet_lite0", "mobilenet_v2"])
def test_onnx_and_torch_embeddings_agree_on_real_photos(settings, sample_photos, model, request):
    if model == "mobilenet_v2":
        request.getfixturevalue("shared_weights")  # skips outside the workplace
    photos = list(sample_photos.values())
    onnx_vectors = create_embedder(model, backend="onnxruntime", settings=settings).encode(photos)
    torch_vectors = create_embedder(model, backend="torch", settings=settings).encode(photos)
    agreement = np.sum(onnx_vectors * torch_vectors, axis=1)
    assert agreement.min() >= 0.9999, agreement


def test_export_is_cached_and_reused(settings):
    spec = resolve_model("tf_efficientnet_lite0")
    first = ensure_onnx(spec, 224, settings)
    mtime = first.onnx_path.stat().st_mtime_ns
    second = ensure_onnx(spec, 224, settings)
    assert second.onnx_path == first.onnx_path and second.onnx_path.stat().st_mtime_ns == mtime
    assert first.meta["weights"]["kind"] == "package" and first.dim == 1280


def test_other_input_size_is_a_separate_export(settings, sample_china):
    embedder = create_embedder("tf_efficientnet_lite0", input_size=416, settings=settings)
    assert embedder.input_size == 416 and embedder.encode([sample_china]).shape == (1, 1280)
