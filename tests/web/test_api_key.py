"""A server with ``api_key`` set: the page shows the API's refusal, then works once the key is entered."""

from __future__ import annotations

import httpx
import pytest

from .conftest import serving
from .photos import edited_copy

pytestmark = pytest.mark.browser

KEY = "web-test-key-123"


@pytest.fixture(scope="module")
def keyed_server(browser, settings, tmp_path_factory):
    with serving(settings, tmp_path_factory.mktemp("web-keyed"), LOOKALIKE_API_KEY=KEY) as base:
        yield base


def test_search_page_explains_how_to_add_a_first_catalog(browser, keyed_server):
    context = browser.new_context(base_url=keyed_server)
    page = context.new_page()
    try:
        page.goto("/search")
        page.wait_for_selector("body[data-ready='true']")
        note = page.locator("#error.note")
        note.wait_for(state="visible")
        assert "No catalogs yet" in note.inner_text()
        assert page.locator("#search").is_disabled()
    finally:
        context.close()


def test_duplicates_feedback_asks_for_the_api_key_then_stores_with_it(browser, keyed_server, sample_photos, tmp_path):
    photos = [sample_photos["chelsea"], edited_copy(sample_photos["chelsea"], tmp_path / "cat-copy.jpg")]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    with httpx.Client(base_url=keyed_server, timeout=120, headers={"X-API-Key": KEY}) as api:
        added = api.post("/v1/catalogs/keyed/images", files=files)
        if added.status_code in (404, 405):
            pytest.skip("the catalog endpoints (/v1/catalogs/...) are not served by this build")
        assert added.status_code == 200, added.text
        ids = [item["id"] for item in added.json()["added"]]
        refused = httpx.post(f"{keyed_server}/v1/feedback",
                             json={"catalog": "keyed", "id_a": ids[0], "id_b": ids[1], "label": "same"})
        assert refused.status_code == 401

        context = browser.new_context(base_url=keyed_server)
        page = context.new_page()
        try:
            page.goto("/duplicates?catalog=keyed")
            page.wait_for_selector("body[data-ready='true']")
            assert page.locator("details.apikey").get_attribute("open") is not None  # offered at once
            row = page.locator(".pair-row").first
            row.locator(".fb-same").click()
            error = page.locator("#error")
            error.wait_for(state="visible")
            assert error.inner_text().startswith(refused.json()["detail"])
            assert "API key" in error.inner_text()

            page.fill("#apikey", KEY)
            page.click("#apikey-form button")
            page.locator(".pair-row").first.locator(".fb-same").click()
            page.locator(".pair-row[data-label='same']").wait_for()
            assert error.is_hidden()
            labels = [r["label"] for r in api.get("/v1/feedback").json() if r["catalog"] == "keyed"]
            assert labels == ["same"]
        finally:
            context.close()
