"""Every page fits a phone screen (390x844): no horizontal scrolling."""

from __future__ import annotations

import pytest

from .conftest import screenshot

pytestmark = pytest.mark.browser

PAGES = ["/", "/search", "/duplicates", "/calibration"]


@pytest.mark.parametrize("path", PAGES)
def test_page_has_no_horizontal_overflow_at_phone_width(browser, server, path, sample_photos, request):
    if path in ("/search", "/duplicates"):
        request.getfixturevalue("catalog")  # something to show (skips when catalogs are not served)
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                  is_mobile=True, has_touch=True, base_url=server)
    page = context.new_page()
    try:
        page.goto(path)
        page.wait_for_selector("body[data-ready='true']", timeout=60_000)
        if path == "/":
            page.set_input_files("#file-a", str(sample_photos["chelsea"]))
            page.set_input_files("#file-b", str(sample_photos["coffee"]))
            page.wait_for_function("document.querySelector('#verdict').dataset.verdict !== ''", timeout=60_000)
            page.wait_for_timeout(700)
        elif path == "/search":
            page.set_input_files("#file-q", str(sample_photos["chelsea"]))
            page.locator("#results .hit").first.wait_for(timeout=60_000)
            page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
        elif path == "/duplicates":
            page.locator(".cluster").first.wait_for(timeout=60_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide at a 390px viewport"
        name = "phone" if path == "/" else f"phone-{path.strip('/')}"
        screenshot(page, name, full_page=path == "/")
    finally:
        context.close()
