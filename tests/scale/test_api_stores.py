"""The catalog API answers the same on Qdrant and Milvus as on FAISS (real app, real photos, real weights)."""

from __future__ import annotations


import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ..conftest import jpeg_bytes

pytestmark = [pytest.mark.scale, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def run_api(settings, sample_photos) -> dict:
    from lookalike.api.app import create_app

    files = [("files", (f"{name}.jpg", path.read_bytes(), "image/jpeg")) for name, path in sorted(sample_photos.items())]
    for name in ("china", "coffee"):  # near-duplicates: half size, lower JPEG quality
        image = Image.open(sample_photos[name])
        half = jpeg_bytes(image.resize((image.width // 2, image.height // 2)), quality=70)
        files.append(("files", (f"{name}_half.jpg", half, "image/jpeg")))
    out = {}
    with TestClient(create_app(settings)) as client:
        added = client.post("/v1/catalogs/shop/images", files=files)
        assert added.status_code == 200, added.text
        out["added"] = [(a["filename"], a["id"], a["status"]) for a in added.json()["added"]]
        query = {"image": ("q.jpg", sample_photos["chelsea"].read_bytes(), "image/jpeg")}
        found = client.post("/v1/catalogs/shop/search", files=query, data={"k": "4"})
        assert found.status_code == 200, found.text
        out["search"] = [(r["id"], round(r["cosine"], 4), r["verdict"]) for r in found.json()["results"]]
        by_id = client.post("/v1/catalogs/shop/search", data={"id": "1", "k": "3"})
        out["search_by_id"] = [(r["id"], round(r["cosine"], 4)) for r in by_id.json()["results"]]
        dups = client.get("/v1/catalogs/shop/duplicates", params={"threshold": 0.9})
        assert dups.status_code == 200, dups.text
        out["duplicates"] = [(c["tier"], c["keep"], sorted(m["id"] for m in c["members"]))
                             for c in dups.json()["clusters"]]
        assert client.delete("/v1/catalogs/shop/images/1").status_code in (200, 204)
        after = client.post("/v1/catalogs/shop/search", files=query, data={"k": "10"})
        out["after_delete"] = sorted(r["id"] for r in after.json()["results"])
    return out


@pytest.fixture(scope="module")
def on_faiss(settings, sample_photos, tmp_path_factory) -> dict:
    return run_api(settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("faiss"), "store": "faiss"}),
                   sample_photos)


@pytest.mark.parametrize("store, module, trace", [
    pytest.param("qdrant", "qdrant_client", "qdrant", id="qdrant-local"),
    pytest.param("milvus", "milvus_lite", "milvus.db", id="milvus-lite"),
])
def test_catalog_api_same_as_on_faiss(store, module, trace, on_faiss, settings, sample_photos, tmp_path):
    pytest.importorskip(module)
    answers = run_api(settings.model_copy(update={"data_dir": tmp_path, "store": store}), sample_photos)
    assert (tmp_path / "catalogs" / "shop" / trace).exists()  # the vectors really went to that store
    assert not (tmp_path / "catalogs" / "shop" / "vectors.faiss").exists()
    assert answers == on_faiss
    assert on_faiss["duplicates"] and 1 not in on_faiss["after_delete"]
