"""torch/timm side: build a model with its real weights, and export it to ONNX once.

This is the only module that imports torch and timm, and only inside functions. The server
never imports it in-process: a missing ONNX file is exported in a child process
(``python -m lookalike.models.export``), so serving stays at ONNX Runtime's memory footprint.
Exports are cached on disk keyed by model, input size, pooling and weights hash.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from lookalike.config import Settings
from lookalike.errors import LookalikeError, WeightsUnavailableError
from lookalike.models.registry import ModelSpec, resolve_model
from lookalike.models.weights import WeightsSource, require_weights

Pooling = Literal["avg", "gem", "max"]
ONNX_OPSET = 17
EXPORT_FORMAT_VERSION = 1  # bump when the exported graph changes meaning


@dataclass(frozen=True)
class ExportedModel:
    onnx_path: Path
    meta: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])


def export_key(spec: ModelSpec, size: int, pooling: Pooling, source: WeightsSource) -> str:
    return f"{spec.name}-{size}-{pooling}-{source.fingerprint()}-v{EXPORT_FORMAT_VERSION}"


def onnx_cache_dir(settings: Settings) -> Path:
    return Path(settings.cache_dir).expanduser() / "onnx"


def onnx_file_model(spec: ModelSpec, size: int, settings: Settings) -> ExportedModel:
    """A ready-made ONNX model (``format="onnx"``) is its own export: the file is loaded as it is."""
    source = require_weights(spec, settings)
    meta = {
        "model": spec.name, "input_size": size, "pooling": "in the graph", "dim": spec.dim,
        "weights": {"kind": source.kind, "location": source.location},
    }
    return ExportedModel(Path(source.location), meta)


def cached_export(spec: ModelSpec, size: int, pooling: Pooling, settings: Settings) -> ExportedModel | None:
    if spec.is_onnx_file:
        return onnx_file_model(spec, size, settings)
    source = require_weights(spec, settings)
    path = onnx_cache_dir(settings) / f"{export_key(spec, size, pooling, source)}.onnx"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        return ExportedModel(path, json.loads(meta_path.read_text()))
    return None


def ensure_onnx(
    spec: ModelSpec, size: int, settings: Settings, *, pooling: Pooling = "avg", in_process: bool = False
) -> ExportedModel:
    """The cached ONNX export of (model, size, pooling, weights); export it first if missing.

    ``in_process=False`` runs the export in a child process so the caller never imports torch.
    """
    found = cached_export(spec, size, pooling, settings)
    if found is not None:
        return found
    source = require_weights(spec, settings)
    out = onnx_cache_dir(settings) / f"{export_key(spec, size, pooling, source)}.onnx"
    if in_process:
        export_onnx(spec, size, source, out, pooling=pooling)
    else:
        _export_in_child(spec, size, source, out, pooling)
    return ExportedModel(out, json.loads(out.with_suffix(".json").read_text()))


def _export_in_child(spec: ModelSpec, size: int, source: WeightsSource, out: Path, pooling: Pooling) -> None:
    cmd = [
        sys.executable, "-m", "lookalike.models.export",
        "--model", spec.name, "--size", str(size), "--pooling", pooling,
        "--weights-kind", source.kind, "--weights-location", source.location, "--remap", source.remap,
        "--out", str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode == 3:
        raise WeightsUnavailableError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "weights unavailable")
    if done.returncode != 0:
        raise LookalikeError(f"ONNX export of {spec.name} failed: {done.stderr.strip()[-2000:]}", status=500,
                             code="export_failed")


def build_torch_model(spec: ModelSpec, source: WeightsSource | None, *, pooling: Pooling = "avg"):
    """A timm model in eval mode that maps an NCHW batch to pooled (not yet normalized) features.

    ``source=None`` builds random weights: for unit tests only (their names say so).
    """
    import timm
    import torch

    if source is None:
        model = timm.create_model(spec.name, pretrained=False)
    elif source.kind == "hub":
        try:
            model = timm.create_model(source.location.removeprefix("timm/"), pretrained=True)
        except Exception as exc:  # network, missing file, auth: all mean "no weights here"
            raise WeightsUnavailableError(
                f"could not fetch {source.location} from the hub ({type(exc).__name__}); "
                f"put {spec.weight_files[0] if spec.weight_files else spec.name + '.pth'} in a weights folder"
            ) from exc
    elif source.remap == "by_position":
        model = timm.create_model(spec.name, pretrained=False)
        state = torch.load(source.location, map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(state) != len(target):
            raise WeightsUnavailableError(
                f"{source.location} has {len(state)} tensors, {spec.name} expects {len(target)}"
            )
        remapped = {}
        for (key, ref), value in zip(target.items(), state.values()):
            if tuple(ref.shape) != tuple(value.shape):
                raise WeightsUnavailableError(f"{source.location}: tensor for {key} has shape {tuple(value.shape)}")
            remapped[key] = value.contiguous()
        model.load_state_dict(remapped, strict=True)
    else:
        model = timm.create_model(spec.name, pretrained=True, pretrained_cfg_overlay=dict(file=source.location))
    model.reset_classifier(0)
    model.eval()
    return _with_pooling(model, pooling) if pooling != "avg" else model


def _with_pooling(backbone, pooling: str):
    """Backbone feature map -> GeM (p=3) or max pooling instead of timm's average head."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            features = self.backbone.forward_features(x)
            if pooling == "max":
                return features.amax(dim=(2, 3))
            return features.clamp(min=1e-6).pow(3.0).mean(dim=(2, 3)).pow(1.0 / 3.0)

    return Pooled().eval()


def export_onnx(spec: ModelSpec, size: int, source: WeightsSource, out: Path, *, pooling: Pooling = "avg") -> Path:
    """Export to ``out`` atomically (tmp file + rename) and write the sidecar metadata."""
    import torch

    model = build_torch_model(spec, source, pooling=pooling)
    dummy = torch.zeros(2, 3, size, size)
    with torch.inference_mode():
        dim = int(model(dummy).shape[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        torch.onnx.export(
            model, (dummy,), tmp_name,
            input_names=["input"], output_names=["features"],
            dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
            opset_version=ONNX_OPSET, dynamo=False,
        )
        meta = {
            "model": spec.name, "input_size": size, "pooling": pooling, "dim": dim,
            "weights": {"kind": source.kind, "location": source.location, "sha256_16": source.fingerprint()},
            "preprocessing": asdict(spec.preprocessing.with_size(size)),
            "torch": torch.__version__, "opset": ONNX_OPSET,
        }
        meta_tmp = out.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_name, out)
        os.replace(meta_tmp, out.with_suffix(".json"))
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return out


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="export one lookalike model to ONNX (used as a child process)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--pooling", default="avg")
    parser.add_argument("--weights-kind", required=True)
    parser.add_argument("--weights-location", required=True)
    parser.add_argument("--remap", default="none")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    spec = resolve_model(args.model)
    source = WeightsSource(args.weights_kind, args.weights_location, args.remap)
    try:
        export_onnx(spec, args.size, source, Path(args.out), pooling=args.pooling)
    except WeightsUnavailableError as exc:
        print(exc.message, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
