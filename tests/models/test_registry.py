"""The model table: seed names resolve, and the copied preprocessing matches timm's own configs."""

from __future__ import annotations

import pytest

from lookalike.errors import BadInputSizeError, UnknownModelError
from lookalike.models.registry import check_input_size, list_models, resolve_model

SEED_MODELS = ["resnet18", "efficientnet_b0", "mobilenet_v2", "convnext_tiny", "convnext_base", "cspdarknet53",
               "resnet50", "resnet101", "vgg16"]


@pytest.mark.parametrize("name", SEED_MODELS + ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_every_seed_model_resolves(name):
    assert resolve_model(name).name


def test_seed_alias_maps_to_timm_name():
    assert resolve_model("mobilenet_v2").name == "mobilenetv2_100"


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownModelError, match="resnet18"):
        resolve_model("resnet9000")


def test_input_size_check():
    spec = resolve_model("resnet18")
    assert check_input_size(416, [224, 416, 512], spec) == 416
    with pytest.raises(BadInputSizeError, match="224"):
        check_input_size(333, [224, 416, 512], spec)


@pytest.mark.parametrize("spec", [s for s in list_models() if not s.is_onnx_file], ids=lambda s: s.name)
def test_table_matches_timm_pretrained_cfg_random_weights(spec):
    """Our table copies timm's pretrained cfg (so the server needn't import timm); keep them in sync.

    The model is built with random weights: only its config and feature size are compared.
    """
    timm = pytest.importorskip("timm")
    import torch

    model = timm.create_model(spec.name, pretrained=False, num_classes=0)
    cfg = model.pretrained_cfg
    pre = spec.preprocessing
    assert cfg["input_size"][1] == pre.input_size
    assert tuple(cfg["mean"]) == pytest.approx(pre.mean)
    assert tuple(cfg["std"]) == pytest.approx(pre.std)
    assert cfg["interpolation"] == pre.interpolation
    assert cfg["crop_pct"] == pytest.approx(pre.crop_pct)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 64)).shape[1] == spec.dim
