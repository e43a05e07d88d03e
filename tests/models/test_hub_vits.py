"""Hub ViTs (DINOv2, CLIP, SigLIP) in the model table; their ONNX export, offline with RANDOM weights.

The real weights come from the hub (allow_hub_download, online); offline, these tests build the
same timm architectures with random weights (the names say so), export them through lookalike's
own export path at the default size (224, position embedding resampled), check ONNX Runtime
against torch eager, and compare photos with the exported file declared as ``[models.NAME]``,
the way a user brings a model they exported themselves. The service cannot reach the random
weights path: there is no setting for it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lookalike.models.registry import check_input_size, resolve_model

from ..server import server_env

HUB_VITS = {
    "dinov2_small": ("vit_small_patch14_dinov2", 384),
    "dinov2_base": ("vit_base_patch14_dinov2", 768),
    "clip_b16": ("vit_base_patch16_clip_224", 768),
    "siglip_b16": ("vit_base_patch16_siglip_224", 768),
}


@pytest.mark.parametrize("alias", HUB_VITS)
def test_hub_vit_aliases_resolve_with_224_default(alias):
    spec = resolve_model(alias)
    name, dim = HUB_VITS[alias]
    assert spec.name == name and spec.dim == dim and spec.default_size == 224 and spec.hub_tag
    assert spec.own_pooling in ("token", "map") and spec.default_size % spec.patch_size == 0


def test_vit_sizes_must_be_patch_multiples():
    from lookalike.errors import BadInputSizeError

    spec = resolve_model("dinov2_small")
    assert check_input_size(224, [224, 240, 518], spec) == 224
    assert check_input_size(518, [224, 240, 518], spec) == 518
    with pytest.raises(BadInputSizeError, match="patch size 14"):
        check_input_size(240, [224, 240, 518], spec)


def test_models_lists_the_hub_vits_offline(settings):
    out = subprocess.run([sys.executable, "-m", "lookalike", "models"], env=server_env(settings, COLUMNS="300"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for alias, (name, _dim) in HUB_VITS.items():
        row = next(line for line in out.stdout.splitlines() if name in line)
        assert alias in row and "missing" in row  # offline and hub off: listed, not available


@pytest.mark.parametrize("alias", ["dinov2_small", "siglip_b16"])
def test_hub_vit_export_and_compare_random_weights(alias, settings, tmp_path, sample_china, sample_flower):
    import torch

    from lookalike.config import Settings
    from lookalike.embed import create_embedder
    from lookalike.models.export import build_torch_model, export_random_weights_onnx_for_tests

    spec = resolve_model(alias)
    torch.manual_seed(0)
    out = export_random_weights_onnx_for_tests(spec, spec.default_size, tmp_path / f"{alias}.onnx")
    pre = spec.preprocessing
    declared = Settings(**{**settings.model_dump(exclude={"models"}), "models": {
        f"{alias}_random": {"onnx": str(out), "input_size": pre.input_size, "mean": list(pre.mean),
                            "std": list(pre.std), "interpolation": pre.interpolation},
    }})
    embedder = create_embedder(f"{alias}_random", settings=declared, backend="onnxruntime")
    assert embedder.dim == spec.dim
    vectors = embedder.encode([sample_china, sample_china, sample_flower])
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert np.abs(vectors[0] - vectors[2]).max() > 1e-6  # random ViTs differ little between photos, but do

    # the ONNX graph computes what torch eager computes: the same seed builds the same random weights
    torch.manual_seed(0)
    eager = build_torch_model(spec, None, size=spec.default_size)
    batch = embedder.preprocessing.to_array([embedder.load(sample_china), embedder.load(sample_flower)])
    with torch.inference_mode():
        reference = eager(torch.from_numpy(batch)).numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert float(reference[0] @ vectors[0]) > 0.999
    # random weights map every photo near one vector: compare what differs between two photos
    onnx_delta, eager_delta = vectors[0] - vectors[2], reference[0] - reference[1]
    agreement = float(onnx_delta @ eager_delta / np.linalg.norm(onnx_delta) / np.linalg.norm(eager_delta))
    assert agreement > 0.99, agreement
