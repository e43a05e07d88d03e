"""Weights are resolved in the documented order, and missing weights are a clear 503, never random."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.config import Settings
from lookalike.errors import WeightsUnavailableError
from lookalike.models.registry import resolve_model
from lookalike.models.weights import find_weights, require_weights


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(cache_dir=tmp_path, weights_dirs=kw.pop("weights_dirs", [tmp_path / "w"]),
                    allow_hub_download=kw.pop("allow_hub_download", False), **kw)


def test_lite0_weights_come_from_the_installed_package(tmp_path):
    source = find_weights(resolve_model("tf_efficientnet_lite0"), _settings(tmp_path))
    assert source.kind == "package" and source.remap == "by_position" and Path(source.location).is_file()


def test_weights_dir_beats_package_and_config_beats_both(tmp_path):
    spec = resolve_model("tf_efficientnet_lite0")
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "tf_efficientnet_lite0.pth").write_bytes(b"x")
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"y")
    assert find_weights(spec, _settings(tmp_path)).kind == "weights_dir"
    chosen = find_weights(spec, _settings(tmp_path, weights_files={"tf_efficientnet_lite0": explicit}))
    assert chosen.kind == "config" and chosen.location == str(explicit)


def test_hub_is_last_and_only_when_allowed(tmp_path):
    spec = resolve_model("resnet18")
    assert find_weights(spec, _settings(tmp_path)) is None
    assert find_weights(spec, _settings(tmp_path, allow_hub_download=True)).kind == "hub"


def test_missing_weights_message_says_which_file_where(tmp_path):
    with pytest.raises(WeightsUnavailableError) as info:
        require_weights(resolve_model("resnet18"), _settings(tmp_path))
    assert info.value.status == 503
    assert "resnet18.pth" in info.value.message and str(tmp_path / "w") in info.value.message


def test_shared_mobilenet_weights_are_found(tmp_path, shared_weights):
    source = find_weights(resolve_model("mobilenet_v2"), _settings(tmp_path, weights_dirs=[shared_weights]))
    assert source.kind == "weights_dir" and "mobilenetv2_100" in source.location
