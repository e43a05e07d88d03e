"""The UI's server side without a browser: pages, static files, offline docs assets."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from lookalike.api.app import create_app

PAGES = {"/": "compare", "/search": "search", "/duplicates": "duplicates", "/calibration": "calibration"}


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize("path,page", PAGES.items())
def test_each_page_is_served_with_its_script_and_settings(client, settings, path, page):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f'<body data-page="{page}">' in html
    assert f'src="/static/{page}.js' in html
    assert 'href="/docs"' in html
    config = json.loads(re.search(r'<script id="lookalike-config" type="application/json">(.*?)</script>', html).group(1))
    assert config["default_model"] == settings.default_model
    assert config["allowed_input_sizes"] == settings.allowed_input_sizes
    assert '<a href="%s" aria-current="page">' % path in html


def test_static_files_exist_for_every_page_and_are_served(client):
    for page in [*PAGES.values(), "common"]:
        response = client.get(f"/static/{page}.js")
        assert response.status_code == 200, page
        assert "javascript" in response.headers["content-type"]
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../api/app.py").status_code == 404


def test_docs_assets_are_served_locally_and_are_swagger_ui_5(client):
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    bundle = client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    # Swagger UI 4 cannot read FastAPI's OpenAPI 3.1 schema; the vendored bundle must be 5.x.
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert re.search(rb'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle.content) is not None


def test_pages_stay_out_of_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not set(PAGES) & set(paths)
