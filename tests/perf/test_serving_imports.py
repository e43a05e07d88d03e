"""The serving process answers a comparison without ever importing torch (memory: torch is ~400 MB)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
from fastapi.testclient import TestClient
from lookalike.api.app import create_app
from lookalike.config import Settings

settings = Settings(**json.loads(sys.argv[1]))
with TestClient(create_app(settings, preload=True)) as client:
    files = {"image_1": ("a.jpg", open(sys.argv[2], "rb").read(), "image/jpeg"),
             "image_2": ("b.jpg", open(sys.argv[3], "rb").read(), "image/jpeg")}
    for path in ("/v1/compare", "/cosine_similarity_score"):
        response = client.post(path, files=files)
        assert response.status_code == 200, response.text
print(json.dumps({"torch": "torch" in sys.modules, "timm": "timm" in sys.modules}))
"""


def test_serving_never_imports_torch(settings, sample_photos):
    values = {"cache_dir": str(settings.cache_dir), "weights_dirs": [str(p) for p in settings.weights_dirs],
              "allow_hub_download": False, "data_dir": str(settings.data_dir)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(values), str(sample_photos["china"]), str(sample_photos["flower"])],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"torch": False, "timm": False}
