"""ONNX export: cached on disk, reused, and numerically the same model as torch eager."""

from __future__ import annotations

from pathlib import Path

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


def test_cli_export_builds_the_file_compare_then_loads(settings, sample_photos, tmp_path):
    """`lookalike export` then `lookalike compare`: one ONNX file for the model and size, no second export."""
    import subprocess
    import sys

    from ..server import server_env

    cache = tmp_path / "cache"
    env = server_env(settings.model_copy(update={"cache_dir": cache}), COLUMNS="300")
    exported = subprocess.run([sys.executable, "-m", "lookalike", "export", "tf_efficientnet_lite0"], env=env,
                              capture_output=True, text=True, timeout=600)
    assert exported.returncode == 0, exported.stderr
    assert "-gem-" in Path(exported.stdout.strip()).name  # the service's pooling, not timm's average head
    files = sorted((cache / "onnx").glob("tf_efficientnet_lite0-224-*.onnx"))
    assert len(files) == 1 and files[0].name in exported.stdout
    built = files[0].stat().st_mtime_ns
    compared = subprocess.run([sys.executable, "-m", "lookalike", "compare", str(sample_photos["china"]),
                               str(sample_photos["flower"]), "--json"], env=env, capture_output=True, text=True,
                              timeout=600)
    assert compared.returncode == 0, compared.stderr
    assert sorted((cache / "onnx").glob("tf_efficientnet_lite0-224-*.onnx")) == files
    assert files[0].stat().st_mtime_ns == built
