"""ONNX models declared in the config file (``[models.NAME]``, issue 14 item 2), made in the test.

The two tiny models have random weights (the test names say so): an NCHW float32 conv net and an
NHWC uint8 one that normalizes inside its graph. What is checked is the plumbing (layout, dtype,
listing, compare through the CLI and a live API, clear errors naming the setting), not accuracy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from lookalike.config import Settings
from lookalike.errors import LookalikeError

from ..server import running_server, server_env

torch = pytest.importorskip("torch")


class _TinyNCHW(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3))


class _TinyNHWCUint8(torch.nn.Module):
    """Raw RGB bytes in (batch, h, w, 3), the way SSCD's files take them."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _TinyNCHW()

    def forward(self, x):
        return self.body(x.permute(0, 3, 1, 2).float() / 255.0 - 0.5)


class _BadOutput(torch.nn.Module):
    def forward(self, x):
        return x[:, :, :4, :4]  # a 4-d output, not a (batch, dim) embedding


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    torch.manual_seed(0)
    module.eval()
    torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("declared")
    torch.manual_seed(0)
    return {
        "nchw": _export(_TinyNCHW(), torch.zeros(1, 3, 64, 64), folder / "tiny_nchw.onnx"),
        "nhwc": _export(_TinyNHWCUint8(), torch.zeros(1, 64, 64, 3, dtype=torch.uint8), folder / "tiny_nhwc.onnx"),
        "bad_output": _export(_BadOutput(), torch.zeros(1, 3, 64, 64), folder / "bad_output.onnx"),
    }


def _declared(settings: Settings, **models: dict) -> Settings:
    return Settings(**{**settings.model_dump(exclude={"models"}), "models": models, "calibration_file": None})


def _config_file(tmp_path: Path, models: dict[str, dict]) -> Path:
    lines = []
    for name, fields in models.items():
        lines.append(f"[models.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    path = tmp_path / "lookalike.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_declared_nchw_float32_and_nhwc_uint8_models_embed_random_weights(settings, tiny_models, sample_china,
                                                                          sample_flower):
    from lookalike.embed import create_embedder
    from lookalike.models.registry import resolve_model

    declared = _declared(
        settings,
        tiny_nchw={"onnx": str(tiny_models["nchw"]), "input_size": 64, "layout": "NCHW", "dtype": "float32",
                   "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        tiny_nhwc={"onnx": str(tiny_models["nhwc"]), "input_size": 64, "layout": "NHWC", "dtype": "uint8"},
    )
    for name, layout, dtype in (("tiny_nchw", "NCHW", np.float32), ("tiny_nhwc", "NHWC", np.uint8)):
        spec = resolve_model(name, declared)
        assert spec.is_onnx_file and spec.setting == f"models.{name}"
        embedder = create_embedder(name, settings=declared)
        assert embedder.dim == 16 and embedder.input_size == 64
        batch = embedder.preprocessing.to_array([embedder.load(np.asarray(sample_china))])
        assert batch.dtype == dtype
        assert batch.shape == ((1, 3, 64, 64) if layout == "NCHW" else (1, 64, 64, 3))
        vectors = embedder.encode([sample_china, sample_china, sample_flower])
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)  # same photo, same vector
        assert float(vectors[0] @ vectors[2]) < 0.99999


def test_declared_model_errors_name_the_setting(settings, tiny_models, tmp_path):
    from lookalike.embed import create_embedder

    missing = _declared(settings, gone={"onnx": str(tmp_path / "nowhere.onnx")})
    with pytest.raises(LookalikeError, match=r"models\.gone\.onnx") as err:
        create_embedder("gone", settings=missing)
    assert err.value.status < 500 or err.value.status == 503

    wrong_layout = _declared(settings, flipped={"onnx": str(tiny_models["nchw"]), "input_size": 64, "layout": "NHWC"})
    with pytest.raises(LookalikeError, match=r"models\.flipped\.layout") as err:
        create_embedder("flipped", settings=wrong_layout)
    assert err.value.status == 503

    bad_output = _declared(settings, four_d={"onnx": str(tiny_models["bad_output"]), "input_size": 64})
    with pytest.raises(LookalikeError, match=r"models\.four_d\.onnx.*|\(batch, dim\)") as err:
        create_embedder("four_d", settings=bad_output)
    assert "(batch, dim)" in err.value.message and "models.four_d" in err.value.message

    with pytest.raises(LookalikeError, match=r"models\.typo\.layout"):
        _declared(settings, typo={"onnx": str(tiny_models["nchw"]), "layout": "NWHC"})
    with pytest.raises(LookalikeError, match="tf_efficientnet_lite0"):
        _declared(settings, tf_efficientnet_lite0={"onnx": str(tiny_models["nchw"])})


def test_declared_model_in_cli_models_and_compare_random_weights(settings, tiny_models, sample_photos, tmp_path):
    config = _config_file(tmp_path, {"tiny_nchw": {"onnx": str(tiny_models["nchw"]), "input_size": 64}})
    env = server_env(settings, COLUMNS="250", LOOKALIKE_CONFIG=str(config))
    listed = subprocess.run([sys.executable, "-m", "lookalike", "models"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "tiny_nchw" in line)
    assert "file" in row and "yes" in row and "16" in row
    same = subprocess.run([sys.executable, "-m", "lookalike", "compare", str(sample_photos["china"]),
                           str(sample_photos["china"]), "--model", "tiny_nchw", "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stderr
    result = json.loads(same.stdout)
    assert result["model"] == "tiny_nchw" and result["score"] == pytest.approx(1.0, abs=1e-4)


def test_declared_model_served_by_the_api_random_weights(settings, tiny_models, sample_photos, tmp_path):
    config = _config_file(tmp_path, {
        "tiny_nhwc": {"onnx": str(tiny_models["nhwc"]), "input_size": 64, "layout": "NHWC", "dtype": "uint8"},
        "broken": {"onnx": str(tmp_path / "missing.onnx")},
    })
    with running_server(settings, LOOKALIKE_CONFIG=str(config)) as url:
        models = {m["name"]: m for m in httpx.get(f"{url}/v1/models", timeout=30).json()}
        assert models["tiny_nhwc"]["weights_available"] and "file" in models["tiny_nhwc"]["weights_source"]
        assert models["tiny_nhwc"]["dim"] == 16
        assert not models["broken"]["weights_available"] and "models.broken.onnx" in models["broken"]["weights_source"]
        files = {"image_1": sample_photos["china"].read_bytes(), "image_2": sample_photos["flower"].read_bytes()}
        answer = httpx.post(f"{url}/v1/compare", params={"model": "tiny_nhwc"}, files=files, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "tiny_nhwc" and -1.0 <= answer.json()["cosine"] <= 1.0
        broken = httpx.post(f"{url}/v1/compare", params={"model": "broken"}, files=files, timeout=60)
        assert broken.status_code == 503 and "models.broken.onnx" in broken.text
