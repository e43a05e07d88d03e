"""Contract tests for the seed's endpoint: same path, fields, JSON keys, types and Yes/No rule."""

from __future__ import annotations

from ..conftest import jpeg_bytes

SEED_KEYS = {"Similarity Score", "Are the images similar?", "Time taken in milliseconds"}


def _post(client, a: bytes, b: bytes, **params):
    files = {"image_1": ("a.jpg", a, "image/jpeg"), "image_2": ("b.jpg", b, "image/jpeg")}
    return client.post("/cosine_similarity_score", params=params, files=files)


def test_exact_keys_and_types(client, photo_pair):
    response = _post(client, *photo_pair)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == SEED_KEYS
    assert isinstance(body["Similarity Score"], float) and 0.0 <= body["Similarity Score"] <= 1.0
    assert body["Are the images similar?"] in ("Yes", "No")
    assert isinstance(body["Time taken in milliseconds"], float) and body["Time taken in milliseconds"] > 0


def test_edited_copy_yes_different_photo_no(client, photo_pair, sample_flower):
    original, edited = photo_pair
    same = _post(client, original, edited).json()
    other = _post(client, original, jpeg_bytes(sample_flower)).json()
    assert same["Are the images similar?"] == "Yes"
    assert other["Are the images similar?"] == "No"
    assert same["Similarity Score"] > other["Similarity Score"] + 0.1


def test_yes_no_follows_the_configured_threshold(settings, photo_pair):
    from fastapi.testclient import TestClient

    from lookalike.api.app import create_app

    strict = settings.model_copy(update={"threshold": 0.999})
    with TestClient(create_app(strict)) as client:
        body = _post(client, *photo_pair).json()
    assert body["Similarity Score"] < 0.999 and body["Are the images similar?"] == "No"


def test_seed_model_alias_and_input_size(client, photo_pair, shared_weights):
    response = _post(client, *photo_pair, model_name="mobilenet_v2", input_size=224)
    assert response.status_code == 200, response.text
    assert response.json()["Are the images similar?"] == "Yes"


def test_unknown_model_is_404_json(client, photo_pair):
    response = _post(client, *photo_pair, model_name="resnet9000")
    assert response.status_code == 404 and "unknown model" in response.json()["detail"]


def test_bad_input_size_is_422(client, photo_pair):
    response = _post(client, *photo_pair, input_size=333)
    assert response.status_code == 422 and "input_size" in response.json()["detail"]


def test_model_without_weights_is_503_with_instructions(client, photo_pair):
    response = _post(client, *photo_pair, model_name="resnet18")
    assert response.status_code == 503
    assert "resnet18.pth" in response.json()["detail"]


def test_not_an_image_is_422(client, photo_pair):
    response = _post(client, b"this is text, not a photo", photo_pair[0])
    assert response.status_code == 422 and response.json()["code"] == "bad_image"


def test_missing_field_is_422(client, photo_pair):
    response = client.post("/cosine_similarity_score", files={"image_1": ("a.jpg", photo_pair[0], "image/jpeg")})
    assert response.status_code == 422 and "image_2" in response.json()["detail"]
