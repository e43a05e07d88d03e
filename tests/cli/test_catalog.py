"""``lookalike index / search / dedup / catalogs`` as a user runs them (real subprocess, real photos)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from PIL import Image

from ..conftest import jpeg_bytes
from ..server import server_env


def _run(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike", *args], env=server_env(settings, COLUMNS="200"),
                          capture_output=True, text=True, timeout=300)


def test_index_search_dedup_catalogs(cat_settings, sample_photos, sample_china, tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    for name, path in sample_photos.items():
        shutil.copy(path, folder / f"{name}.jpg")
    (folder / "china_small.jpg").write_bytes(jpeg_bytes(Image.fromarray(sample_china).resize((320, 214)), 60))
    shutil.copy(sample_photos["coffee"], folder / "coffee_copy.jpg")
    (folder / "broken.jpg").write_text("nope")

    indexed = _run(cat_settings, "index", str(folder), "--catalog", "shop", "--json")
    assert indexed.returncode == 0, indexed.stderr
    report = json.loads(indexed.stdout)
    assert (report["added"], report["duplicates"], report["catalog_size"]) == (7, 1, 8)
    assert report["errors"][0]["path"].endswith("broken.jpg")

    human = _run(cat_settings, "index", str(folder), "--catalog", "shop")
    assert human.returncode == 0 and "8 unchanged" in human.stdout and "broken.jpg" in human.stdout

    found = json.loads(_run(cat_settings, "search", str(sample_photos["china"]), "--catalog", "shop", "-k", "3",
                            "--json").stdout)
    names = [r["filename"] for r in found["results"]]
    assert names[:2] == ["china.jpg", "china_small.jpg"]
    assert found["results"][0]["verdict"] == "exact"
    table = _run(cat_settings, "search", str(sample_photos["china"]), "--catalog", "shop", "-k", "3").stdout
    assert "china_small.jpg" in table and "exact" in table
    assert "rank" in table and "inliers" in table and "order: rank = cosine + min(inliers" in table
    assert found["order"] == "rank_score" and all("rank_score" in r and "inliers" in r for r in found["results"])

    out_csv = tmp_path / "dups.csv"
    dedup = _run(cat_settings, "dedup", "--catalog", "shop", "--threshold", "0.9", "--out", str(out_csv))
    assert dedup.returncode == 0, dedup.stderr
    assert "1 exact" in dedup.stdout and "*china.jpg" in dedup.stdout
    rows = out_csv.read_text().splitlines()
    assert rows[0].startswith("cluster_id,tier,id,path") and len(rows) == 5

    listing = json.loads(_run(cat_settings, "catalogs", "--json").stdout)
    assert listing[0]["name"] == "shop" and listing[0]["count"] == 8

    missing = _run(cat_settings, "search", str(sample_photos["china"]), "--catalog", "nope")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad_name = _run(cat_settings, "index", str(folder), "--catalog", "../x")
    assert bad_name.returncode == 2 and "bad catalog name" in bad_name.stderr
