"""Access: the API key guards every write (and reads when asked), names and ids cannot escape.

Routes are enumerated from the OpenAPI schema, so an endpoint added later is covered without editing
this file: every state-changing method must demand the key, except the few POSTs that only read
(comparisons and searches take an upload but change nothing).
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lookalike.api.app import create_app

from .badinput_corpus import encode, photo

KEY = "s3cret-key-for-tests"
# POST endpoints that only read: they compute an answer from an upload and store nothing.
READ_ONLY_POSTS = {"/cosine_similarity_score", "/v1/compare", "/v1/catalogs/{name}/search"}
# Always public: liveness, the API description and the static UI shell.
PUBLIC_GETS = {"/healthz", "/openapi.json", "/docs", "/", "/search", "/duplicates", "/calibration"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(app) -> list[tuple[str, str]]:
    """(METHOD, path template) of every documented endpoint: the OpenAPI schema is the contract."""
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops if method != "head"]


def _concrete(path: str) -> str:
    """A request path for a route template: ids -> 1, names -> 'demo', anything else -> 'x'."""
    path = re.sub(r"\{[^}]*id[^}]*\}", "1", path)
    path = path.replace("{name}", "demo").replace("{catalog}", "demo")
    return re.sub(r"\{[^}]*\}", "x", path)


@pytest.fixture(scope="module")
def keyed_app(settings):
    return create_app(settings.model_copy(update={"api_key": SecretStr(KEY)}))


@pytest.fixture(scope="module")
def keyed(keyed_app):
    with TestClient(keyed_app) as client:
        yield client


@pytest.fixture(scope="module")
def guarded(settings):
    guarded_settings = settings.model_copy(update={"api_key": SecretStr(KEY), "protect_reads": True})
    with TestClient(create_app(guarded_settings)) as client:
        yield client


def _writes(app) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(app) if m in WRITE_METHODS and not (m == "POST" and p in READ_ONLY_POSTS)]


def test_every_write_endpoint_demands_the_key(keyed_app, keyed):
    writes = _writes(keyed_app)
    for method, path in writes:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY[:-1]}):
            response = keyed.request(method, _concrete(path), headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["code"] == "unauthorized"
        with_key = keyed.request(method, _concrete(path), headers={"X-API-Key": KEY})
        assert with_key.status_code != 401 and with_key.status_code < 500, (method, path, with_key.text)


def test_reads_stay_open_unless_protect_reads(keyed):
    assert keyed.get("/v1/models").status_code == 200
    image = encode(photo(), "JPEG")
    files = {"image_1": ("a.jpg", image), "image_2": ("b.jpg", image)}
    assert keyed.post("/v1/compare", files=files).status_code == 200


def test_protect_reads_guards_every_read(guarded):
    image = encode(photo(), "JPEG")
    app = guarded.app
    for method, path in _routes(app):
        if path in PUBLIC_GETS or path.startswith("/docs"):
            continue
        files = {"image_1": ("a.jpg", image), "image_2": ("b.jpg", image)} if method == "POST" else None
        response = guarded.request(method, _concrete(path), files=files)
        assert response.status_code == 401, (method, path, response.text)
    assert guarded.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200
    assert guarded.get("/healthz").status_code == 200  # probes never need the key


def test_cors_is_off_by_default(keyed):
    response = keyed.options("/v1/compare", headers={"Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers
    response = keyed.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_the_configured_origin(settings):
    app = create_app(settings.model_copy(update={"cors_origins": ["https://ok.example"]}))
    with TestClient(app) as client:
        ok = client.get("/v1/models", headers={"Origin": "https://ok.example"})
        bad = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert ok.headers.get("access-control-allow-origin") == "https://ok.example"
    assert "access-control-allow-origin" not in bad.headers


def test_unknown_paths_and_methods_use_the_error_shape(keyed):
    missing = keyed.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = keyed.get("/v1/compare")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


# --- catalog names and ids (only once the catalog routes are registered) -----------------------

TRAVERSALS = ["..", "...", "..%2F..%2Fetc", "%2e%2e", "a%00b", "a b", "-leading-dash", "x" * 200, "%2Fetc%2Fpasswd",
              "nul%5Cx", "%C3%A9t%C3%A9"]


def _catalog_routes(app) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(app) if p.startswith("/v1/catalogs/{")]


def test_catalog_names_cannot_traverse(keyed_app, keyed, settings):
    routes = _catalog_routes(keyed_app)
    if not routes:
        pytest.skip("catalog routes are not registered yet")
    image = encode(photo(), "JPEG")
    before = {p for p in settings.data_dir.parent.rglob("*")} if settings.data_dir.exists() else set()
    for method, path in routes:
        for name in TRAVERSALS:
            url = path.replace("{name}", name)
            url = re.sub(r"\{[^}]*id[^}]*\}", "1", url)
            kwargs = {"files": [("files", ("a.jpg", image, "image/jpeg"))]} if method == "POST" else {}
            response = keyed.request(method, url, headers={"X-API-Key": KEY}, **kwargs)
            assert 400 <= response.status_code < 500, (method, url, response.status_code, response.text)
            assert "code" in response.json(), (method, url, response.text)
    after = {p for p in settings.data_dir.parent.rglob("*")}
    escaped = [p for p in after - before if settings.data_dir not in p.parents and p != settings.data_dir]
    assert not escaped, f"files written outside the catalog dir: {escaped[:5]}"


BAD_IDS = ["abc", "-1", "0", "1.5", "..", "1;DROP TABLE images", "99999999999999999999999", "9223372036854775807"]


def test_catalog_ids_are_validated(keyed_app, keyed):
    routes = [(m, p) for m, p in _catalog_routes(keyed_app) if "{id}" in p or "{image_id}" in p]
    if not routes:
        pytest.skip("catalog routes are not registered yet")
    auth = {"X-API-Key": KEY}
    added = keyed.post("/v1/catalogs/ids/images", headers=auth, files=[("files", ("a.jpg", encode(photo(), "JPEG")))])
    assert added.status_code == 200, added.text  # a real catalog, so lookups reach the database
    for bad_id in BAD_IDS:
        for method, path in routes:
            url = re.sub(r"\{[^}]*id[^}]*\}", bad_id, path).replace("{name}", "ids")
            response = keyed.request(method, url, headers=auth)
            assert response.status_code in (404, 422), (method, url, response.text)
            assert "code" in response.json()
        search = keyed.post("/v1/catalogs/ids/search", headers=auth, data={"id": bad_id})
        assert search.status_code in (404, 422), search.text
    for bad in (-1, 0, 2**70):
        feedback = keyed.post("/v1/feedback", headers=auth,
                              json={"catalog": "ids", "id_a": bad, "id_b": 1, "label": "same"})
        assert feedback.status_code in (404, 422), feedback.text


def test_uploaded_filenames_cannot_choose_where_files_land(keyed_app, keyed, settings):
    if ("POST", "/v1/catalogs/{name}/images") not in _routes(keyed_app):
        pytest.skip("catalog routes are not registered yet")
    image = encode(photo(), "JPEG")
    names = ["../../escape.jpg", "/etc/passwd", "..\\..\\win.jpg", "a/../../b.jpg", "\x00.jpg"]
    root = settings.data_dir.resolve()
    outside_before = set(root.parent.iterdir())
    for name in names:
        response = keyed.post("/v1/catalogs/traversal/images", headers={"X-API-Key": KEY},
                              files=[("files", (name, image, "image/jpeg"))])
        assert response.status_code < 500, response.text
    for path in root.rglob("*"):
        assert root in path.resolve().parents or path.resolve() == root
    assert set(root.parent.iterdir()) == outside_before
