"""Feedback and calibration endpoints over a real socket (``lookalike serve`` on loopback)."""

from __future__ import annotations

import httpx
import pytest
from PIL import Image

from ..conftest import jpeg_bytes
from ..server import running_server


@pytest.fixture(scope="module")
def live(settings, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("feedback-data")
    with running_server(settings, LOOKALIKE_DATA_DIR=str(data_dir), LOOKALIKE_API_KEY="k3y") as url:
        yield url, data_dir


def test_feedback_upload_list_and_recalibrate(live, sample_china, sample_flower, settings):
    url, data_dir = live
    china = jpeg_bytes(sample_china)
    copy = jpeg_bytes(Image.fromarray(sample_china).resize((320, 213)), quality=50)
    flower = jpeg_bytes(sample_flower)
    key = {"X-API-Key": "k3y"}
    refused = httpx.post(f"{url}/v1/feedback", files={"image_1": ("a.jpg", china), "image_2": ("b.jpg", copy)},
                         data={"label": "same"}, timeout=30)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    ids = []
    for other, label in ((copy, "same"), (flower, "different")):
        r = httpx.post(f"{url}/v1/feedback", files={"image_1": ("a.jpg", china), "image_2": ("b.jpg", other)},
                       data={"label": label}, headers=key, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["stored"] is True and r.json()["label"] == label
        ids.append(r.json()["id"])
    listed = httpx.get(f"{url}/v1/feedback", timeout=30).json()
    assert [item["id"] for item in listed] == ids and listed[0]["filename_b"] == "b.jpg"

    from lookalike.quality.calibration import calibrate_embedder
    from lookalike.embed import create_embedder

    fb_settings = settings.model_copy(update={"data_dir": data_dir})
    calibration = calibrate_embedder(create_embedder(settings=settings), None, feedback=fb_settings)
    assert calibration.n_pairs == 2 and "feedback" in calibration.metrics["source"]


@pytest.mark.parametrize("kwargs, status", [
    ({"json": {"catalog": "nope", "id_a": 1, "id_b": 2, "label": "same"}}, 404),
    ({"json": {"catalog": "x", "id_a": 1, "label": "same"}}, 422),
    ({"files": {"image_1": ("a.jpg", b"not an image"), "image_2": ("b.jpg", b"nor this")}, "data": {"label": "same"}}, 422),
    ({"files": {"image_1": ("a.jpg", b"x")}, "data": {"label": "same"}}, 422),
    ({"content": b"label=same", "headers": {"content-type": "text/plain"}}, 415),
])
def test_bad_feedback_is_a_clear_4xx(live, kwargs, status):
    url, _ = live
    headers = {"X-API-Key": "k3y", **kwargs.pop("headers", {})}
    r = httpx.post(f"{url}/v1/feedback", headers=headers, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["detail"] and r.json()["code"]


def test_bad_label_is_refused(live, sample_china):
    url, _ = live
    data = jpeg_bytes(sample_china)
    r = httpx.post(f"{url}/v1/feedback", files={"image_1": ("a.jpg", data), "image_2": ("b.jpg", data)},
                   data={"label": "maybe"}, headers={"X-API-Key": "k3y"}, timeout=30)
    assert r.status_code == 422 and r.json()["code"] == "bad_label"


def test_calibration_table_and_plots(live):
    url, _ = live
    table = httpx.get(f"{url}/v1/calibration", timeout=30).json()
    rows = {(m["model"], m["input_size"]): m for m in table["models"]}
    lite0 = rows[("tf_efficientnet_lite0", 224)]
    assert "shipped" in lite0["source"] and lite0["metrics"]["roc_auc"] > 0.99
    assert lite0["thresholds"]["similar"] <= lite0["thresholds"]["near_duplicate"]
    for kind in ("roc", "hist", "pr"):
        png = httpx.get(f"{url}/v1/calibration/plots/tf_efficientnet_lite0/{kind}.png", timeout=60)
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert httpx.get(f"{url}/v1/calibration/plots/tf_efficientnet_lite0/nope.png", timeout=30).status_code == 404
    assert httpx.get(f"{url}/v1/calibration/plots/no_such_model/roc.png", timeout=30).status_code == 404
