"""`lookalike index --engine ray` as a user runs it: a real subprocess starting its own local Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..server import server_env
from .conftest import need, real_photo_folder

pytestmark = pytest.mark.scale


def test_cli_index_with_ray_engine_matches_local(scale_settings, sample_photos, tmp_path):
    need("ray")
    folder = real_photo_folder(sample_photos, tmp_path / "photos")
    env = server_env(scale_settings, RAY_ADDRESS="", RAY_DISABLE_USAGE_STATS="1")

    def index(catalog: str, *extra: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "lookalike", "index", str(folder), "--catalog", catalog,
                               "--json", *extra], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    ray_report = index("viaray", "--engine", "ray", "--workers", "1")
    local_report = index("vialocal")
    assert ray_report["catalog_size"] == local_report["catalog_size"] == sum(1 for p in folder.rglob("*") if p.is_file())
    assert ray_report["added"] == local_report["added"] and not ray_report["errors"]


def test_cli_rejects_unknown_engine(scale_settings, sample_photos, tmp_path):
    folder = real_photo_folder(sample_photos, tmp_path / "photos")
    done = subprocess.run([sys.executable, "-m", "lookalike", "index", str(folder), "--catalog", "x", "--engine",
                           "spark"], env=server_env(scale_settings), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--engine" in done.stderr
