"""The catalog routes through the real app (TestClient), real photos, real weights."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from lookalike.api.app import create_app

from ..conftest import jpeg_bytes

KEY = {"X-API-Key": "secret-test-key"}


@pytest.fixture(scope="module")
def client(settings, tmp_path_factory):
    local = settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("api-data"), "api_key": SecretStr("secret-test-key")})
    with TestClient(create_app(local)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def uploaded(client, sample_photos):
    files = [("files", (f"{name}.jpg", path.read_bytes(), "image/jpeg")) for name, path in sorted(sample_photos.items())]
    files.append(("files", ("broken.jpg", b"not an image", "image/jpeg")))
    response = client.post("/v1/catalogs/shop/images", files=files, headers=KEY)
    assert response.status_code == 200, response.text
    return response.json()


def test_add_requires_the_key(client, sample_photos):
    files = [("files", ("a.jpg", sample_photos["china"].read_bytes(), "image/jpeg"))]
    response = client.post("/v1/catalogs/shop/images", files=files)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_add_and_list(client, uploaded, sample_photos):
    assert [a["status"] for a in uploaded["added"]] == ["added"] * 6
    assert uploaded["errors"][0]["filename"] == "broken.jpg" and uploaded["errors"][0]["error"]
    again = client.post("/v1/catalogs/shop/images", headers=KEY,
                        files=[("files", ("again.jpg", sample_photos["coffee"].read_bytes(), "image/jpeg"))]).json()
    assert again["added"][0]["status"] == "exists"
    listing = client.get("/v1/catalogs").json()
    assert listing[0]["name"] == "shop" and listing[0]["count"] == 6
    assert listing[0]["model"] == "tf_efficientnet_lite0" and listing[0]["input_size"] == 224


def test_metadata_file_and_thumbnail(client, uploaded, sample_photos):
    image_id = uploaded["added"][0]["id"]
    meta = client.get(f"/v1/catalogs/shop/images/{image_id}").json()
    assert set(meta) == {"id", "path", "filename", "content_hash", "width", "height", "bytes", "added_at"}
    original = client.get(f"/v1/catalogs/shop/images/{image_id}/file")
    assert original.status_code == 200 and original.content == sample_photos["astronaut"].read_bytes()
    thumb = client.get(f"/v1/catalogs/shop/images/{image_id}/thumbnail?size=64")
    assert thumb.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    assert max(Image.open(BytesIO(thumb.content)).size) == 64
    assert client.get(f"/v1/catalogs/shop/images/{image_id}/thumbnail?size=5000").status_code == 422


def test_search_by_upload_and_by_id(client, uploaded, sample_china):
    edited = jpeg_bytes(Image.fromarray(sample_china).crop((30, 20, 600, 400)).resize((400, 266)), quality=50)
    response = client.post("/v1/catalogs/shop/search?k=3", files={"image": ("q.jpg", edited, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == {"id": None, "filename": "q.jpg"}
    assert body["model"] == "tf_efficientnet_lite0"
    assert len(body["results"]) == 3
    assert body["results"][0]["filename"] == "china.jpg"
    assert body["results"][0]["score"] == pytest.approx((body["results"][0]["cosine"] + 1) / 2)
    assert body["results"][0]["verdict"] in ("near_duplicate", "similar")
    # the order in force, and what ordered each hit
    assert body["order"] == "rank_score" and body["reranked"] >= 3
    keys = [r["rank_score"] for r in body["results"]]
    assert keys == sorted(keys, reverse=True)
    assert body["results"][0]["verified"] and body["results"][0]["inliers"] >= 0

    china_id = body["results"][0]["id"]
    by_id = client.post("/v1/catalogs/shop/search", data={"id": str(china_id), "k": "2"}).json()
    assert by_id["query"]["id"] == china_id
    assert len(by_id["results"]) == 2 and china_id not in {r["id"] for r in by_id["results"]}


def test_duplicates(client, uploaded, sample_china):
    edited = jpeg_bytes(Image.fromarray(sample_china).resize((320, 214)), quality=60)
    client.post("/v1/catalogs/shop/images", headers=KEY, files=[("files", ("china-small.jpg", edited, "image/jpeg"))])
    body = client.get("/v1/catalogs/shop/duplicates?threshold=0.9").json()
    assert body["threshold"] == 0.9
    cluster = next(c for c in body["clusters"] if "china.jpg" in {m["filename"] for m in c["members"]})
    assert {m["filename"] for m in cluster["members"]} == {"china.jpg", "china-small.jpg"}
    assert cluster["tier"] == "near_duplicate"
    keep = next(m for m in cluster["members"] if m["id"] == cluster["keep"])
    assert keep["filename"] == "china.jpg"
    assert cluster["pairs"][0]["score"] >= 0.9


def test_duplicates_answer_202_with_progress_then_the_report(client, uploaded):
    """wait=0: the job runs in the background; the first answer is its progress (or, when it was quick
    enough, already the report), and asking again returns the same report as a plain request."""
    first = client.get("/v1/catalogs/shop/duplicates?threshold=0.95&wait=0")
    assert first.status_code in (200, 202)
    if first.status_code == 202:
        body = first.json()
        assert body["status"] == "running" and body["total"] >= 1 and first.headers["Retry-After"] == "2"
    final = client.get("/v1/catalogs/shop/duplicates?threshold=0.95&wait=60")
    assert final.status_code == 200
    assert final.json()["threshold"] == 0.95 and "stats" in final.json()
    assert final.json()["stats"]["images"] >= len(uploaded["added"])


@pytest.mark.parametrize("method,url,kwargs,status", [
    ("get", "/v1/catalogs/nope/images/1", {}, 404),
    ("get", "/v1/catalogs/shop/images/999999", {}, 404),
    ("get", "/v1/catalogs/shop/images/999999/file", {}, 404),
    ("get", "/v1/catalogs/..%2Fetc/duplicates", {}, 404),  # never routed
    ("get", "/v1/catalogs/..%5Cetc/duplicates", {}, 422),
    ("get", "/v1/catalogs/bad.name/duplicates", {}, 422),
    ("post", "/v1/catalogs/shop/search", {}, 422),
    ("post", "/v1/catalogs/shop/search", {"data": {"id": "999999"}}, 404),
    ("post", "/v1/catalogs/shop/search?k=0", {"data": {"id": "1"}}, 422),
    ("post", "/v1/catalogs/shop/search", {"files": {"image": ("x.jpg", b"junk", "image/jpeg")}}, 422),
    ("get", "/v1/catalogs/shop/duplicates?threshold=2", {}, 422),
    ("delete", "/v1/catalogs/shop/images/1", {}, 401),
])
def test_bad_requests_are_clear_4xx(client, uploaded, method, url, kwargs, status):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_delete(client, sample_photos):
    added = client.post("/v1/catalogs/trash/images", headers=KEY,
                        files=[("files", ("r.jpg", sample_photos["rocket"].read_bytes(), "image/jpeg"))]).json()
    image_id = added["added"][0]["id"]
    assert client.delete(f"/v1/catalogs/trash/images/{image_id}", headers=KEY).json() == {"id": image_id, "deleted": True}
    assert client.get(f"/v1/catalogs/trash/images/{image_id}").status_code == 404
    assert client.delete(f"/v1/catalogs/trash/images/{image_id}", headers=KEY).status_code == 404
