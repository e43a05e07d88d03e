"""kill -9 a real indexing process at random moments; the catalog must reopen consistent and resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog.catalog import Catalog
from lookalike.catalog.indexer import index_folder, walk_images
from lookalike.imaging import content_hash

CHILD = """
import json, sys
from lookalike.config import Settings
from lookalike.catalog.catalog import Catalog
from lookalike.catalog.indexer import index_folder
settings = Settings(**json.loads(open(sys.argv[1]).read()))
catalog = Catalog("crash", settings)
print("ready", flush=True)
index_folder(sys.argv[2], catalog, commit_every=8, progress=lambda p: print(p.done, flush=True))
catalog.close()
print("finished", flush=True)
"""


@pytest.fixture
def crop_folder(tmp_path, sample_photos):
    """~120 real-photo JPEGs: random crops of the sample photos."""
    rng = random.Random(7)
    folder = tmp_path / "crops"
    folder.mkdir()
    for name, path in sample_photos.items():
        with Image.open(path) as im:
            for i in range(20):
                w, h = im.size
                cw, ch = rng.randint(w // 3, w), rng.randint(h // 3, h)
                x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                im.crop((x, y, x + cw, y + ch)).save(folder / f"{name}_{i:02d}.jpg", quality=85)
    return folder


def _check(settings, folder) -> int:
    with Catalog("crash", settings, create=False) as catalog:
        catalog.check_consistency()
        for record in catalog.meta.records():
            assert record.path.startswith(str(folder))
            assert content_hash(open(record.path, "rb").read()) == record.content_hash
        paths = [r.path for r in catalog.meta.records()]
        assert len(paths) == len(set(paths))
        return len(catalog)


@pytest.mark.slow
def test_kill_9_during_indexing(crop_folder, cat_settings, embedder, tmp_path):
    settings = cat_settings.model_copy(update={"threads": 1, "index_workers": 2})
    config = tmp_path / "settings.json"
    config.write_text(settings.model_dump_json())
    total = len(list(walk_images(crop_folder)))
    rng = random.Random(int(time.time()))
    counts = [0]
    for _trial in range(4):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(config), str(crop_folder)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # kill after a random number of files read in this run: early, middle, late, during the final save
            remaining = total - counts[-1]
            target = remaining if _trial == 3 else rng.randint(1, max(1, remaining - 1))
            for line in child.stdout:
                if line.strip().isdigit() and int(line) >= target:
                    break
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode in (-signal.SIGKILL, 0), child.stderr.read()
        counts.append(_check(settings, crop_folder))
        assert counts[-1] >= counts[-2], "committed rows were lost"
    # resume: only what is missing gets embedded, and the end state is complete
    with Catalog("crash", settings) as catalog:
        report = index_folder(crop_folder, catalog, embedder=embedder)
        assert report.unchanged == counts[-1]
        assert report.added == total - counts[-1]
        assert not report.errors
        assert len(catalog) == total
        catalog.check_consistency()
        some = catalog.meta.by_path(str(crop_folder / "coffee_03.jpg"))
        expected = embedder.encode([crop_folder / "coffee_03.jpg"])[0]
        np.testing.assert_allclose(catalog.vector(some.id), expected, atol=1e-4)
    assert counts[-1] > 0, f"no kill landed after a commit: {counts}"
    print(json.dumps({"rows_after_each_kill": counts[1:], "total": total}))
