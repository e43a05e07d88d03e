"""Every file of the bad-input corpus gets its specific answer through the real API, never a 5xx."""

from __future__ import annotations

import pytest
from PIL import Image

from .badinput_corpus import CASES, SAME, Case, animation, encode, exif_rotated, make_client, photo, run_case


@pytest.fixture(scope="module")
def client(settings):
    with make_client(settings) as test_client:
        yield test_client


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case_gets_its_answer(client, case: Case):
    response = run_case(client, case)
    body = response.json()
    assert response.status_code < 500, body
    assert response.status_code == case.status, body
    if case.code is None:
        if case.expect_verdict:
            assert body["verdict"] in SAME, body
        return
    assert set(body) == {"detail", "code"} and body["code"] == case.code, body
    assert len(body["detail"]) > 10  # a sentence a person can act on


def _verdict(client, a: bytes, b: bytes) -> str:
    files = {"image_1": ("a.jpg", a, "image/jpeg"), "image_2": ("b.jpg", b, "image/jpeg")}
    response = client.post("/v1/compare", files=files)
    assert response.status_code == 200, response.text
    return response.json()["verdict"]


def test_exif_rotated_photo_gets_the_upright_copys_verdicts(client):
    """Against any third image, the sideways-stored photo must be judged like the upright one."""
    upright = encode(photo(), "JPEG", quality=92)
    edited = encode(Image.fromarray(photo()).crop((20, 15, 300, 225)).resize((280, 210)), "JPEG", quality=60)
    other = encode(photo("flower"), "JPEG", quality=92)
    rotated = exif_rotated()
    assert _verdict(client, rotated, upright) in SAME
    for third in (edited, other):
        assert _verdict(client, rotated, third) == _verdict(client, upright, third)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_is_judged_by_its_first_frame(client, fmt):
    anim = animation(fmt)  # frames: china photo, flower photo, blue
    assert _verdict(client, anim, encode(photo(), "PNG")) in SAME
    assert _verdict(client, anim, encode(photo("flower"), "PNG")) == "different"


def test_seed_endpoint_refuses_like_v1(client):
    files = {"image_1": ("a.jpg", b"", "image/jpeg"), "image_2": ("b.jpg", encode(photo(), "JPEG"), "image/jpeg")}
    response = client.post("/cosine_similarity_score", files=files)
    assert response.status_code == 422 and response.json()["code"] == "bad_image"


def test_non_multipart_body_is_a_clear_422(client):
    response = client.post("/v1/compare", json={"image_1": "x", "image_2": "y"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_uploads_are_decoded_from_their_bytes_not_their_name(client):
    """A PNG named .jpg (and a JPEG named .exe) are still images: names are never trusted."""
    png = encode(photo(), "PNG")
    files = {"image_1": ("photo.exe", png, "application/octet-stream"),
             "image_2": ("x.jpg", encode(photo(), "JPEG", quality=95), "text/html")}
    response = client.post("/v1/compare", files=files)
    assert response.status_code == 200 and response.json()["verdict"] in SAME
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("fmt, status", [("GIF", 200), ("WEBP", 422)])
def test_animation_with_its_last_frame_cut(client, fmt, status):
    """GIF decodes frame by frame, so a cut last frame does not matter; libwebp needs the whole
    container and refuses it: either way a clear answer, never a 5xx."""
    cut = animation(fmt)[:-200]
    files = {"image_1": ("a.img", cut, "image/gif"), "image_2": ("b.png", encode(photo(), "PNG"), "image/png")}
    response = client.post("/v1/compare", files=files)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["verdict"] in SAME if status == 200 else body["code"] == "bad_image"
