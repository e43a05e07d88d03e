"""The CLI as a user runs it: a real subprocess, real photos, real weights."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from ..conftest import jpeg_bytes
from ..server import server_env


def _run(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike", *args], env=server_env(settings, COLUMNS="200"),
                          capture_output=True, text=True, timeout=300)


def test_compare_edited_copy_vs_different_photo(settings, sample_photos, sample_china, tmp_path):
    edited = tmp_path / "china_edited.jpg"
    edited.write_bytes(jpeg_bytes(Image.fromarray(sample_china).crop((30, 20, 600, 400)).resize((400, 266)), 50))
    copy = json.loads(_run(settings, "compare", str(sample_photos["china"]), str(edited), "--json").stdout)
    other = json.loads(_run(settings, "compare", str(sample_photos["china"]), str(sample_photos["coffee"]),
                            "--json").stdout)
    assert copy["verdict"] == "near_duplicate" and other["verdict"] == "different"
    assert copy["score"] - other["score"] > 0.2


def test_compare_human_output_and_errors(settings, sample_photos, tmp_path):
    out = _run(settings, "compare", str(sample_photos["china"]), str(sample_photos["flower"]))
    assert out.returncode == 0 and "verdict" in out.stdout and "different" in out.stdout
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    failed = _run(settings, "compare", str(bad), str(sample_photos["flower"]))
    assert failed.returncode == 2 and "not an image" in failed.stderr


def test_models_table_and_config_show(settings):
    table = _run(settings, "models").stdout
    assert "tf_efficientnet_lite0" in table and "resnet18" in table and "missing" in table
    shown = json.loads(_run(settings, "config", "show", "--json").stdout)
    assert shown["allow_hub_download"]["source"].startswith("env") and shown["threshold"]["value"] == 0.8
