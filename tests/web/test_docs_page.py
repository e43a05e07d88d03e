"""``/docs`` renders Swagger UI with the network blocked: its assets come from the installed package."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from .conftest import screenshot

pytestmark = pytest.mark.browser


def test_docs_render_offline_and_list_the_seed_endpoint(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []

    def only_loopback(route):
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    try:
        page.goto(f"{server}/")
        page.click("nav >> text=API docs")
        page.wait_for_url("**/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=60_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/cosine_similarity_score" in [p.strip().replace("\u200b", "") for p in paths], paths
        assert page.get_by_text("/cosine_similarity_score", exact=True).first.is_visible()
        assert "/v1/compare" in [p.strip().replace("\u200b", "") for p in paths], paths
        assert not blocked, f"/docs tried to leave loopback: {blocked}"
        screenshot(page, "docs", full_page=False)
    finally:
        context.close()
