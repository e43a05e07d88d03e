"""Search page: drop an edited photo on a real catalog and see its original ranked first."""

from __future__ import annotations

import pytest

from .conftest import CATALOG, screenshot
from .photos import edited_copy

pytestmark = pytest.mark.browser


def test_search_page_ranks_the_original_of_an_edited_photo_first(page, catalog, sample_photos, tmp_path):
    query = edited_copy(sample_photos["coffee"], tmp_path / "my-coffee.jpg")

    page.goto(f"/search?catalog={CATALOG}")
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("#catalog").input_value() == CATALOG
    page.select_option("#k", "5")
    page.set_input_files("#file-q", str(query))
    page.locator("#results .hit").first.wait_for()

    hits = page.locator("#results .hit")
    assert hits.count() == 5
    first = hits.first
    assert first.get_attribute("data-id") == str(catalog["coffee.jpg"])
    assert "coffee.jpg" in first.inner_text()
    assert first.get_attribute("data-verdict") in ("exact", "near_duplicate")
    # Thumbnails come from the id URL and really load.
    src = first.locator("img").get_attribute("src")
    assert src.startswith(f"/v1/catalogs/{CATALOG}/images/{catalog['coffee.jpg']}/thumbnail")
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
    # the order in force is the rank (cosine + capped inliers), which each hit shows: a hit may
    # follow one with a higher score, never one with a lower rank
    ranks = [float(t.split("rank ", 1)[1].split(" ", 1)[0])
             for t in page.locator("#results .hit-meta .muted").all_inner_texts()]
    assert len(ranks) == 5 and ranks == sorted(ranks, reverse=True)
    screenshot(page, "search")

    first.click()
    dialog = page.locator("#side-by-side")
    dialog.wait_for(state="visible")
    page.wait_for_function("['#side-query', '#side-hit'].every(s => document.querySelector(s).naturalWidth > 0)")
    assert page.locator("#side-hit-name").inner_text().startswith("coffee.jpg")
    assert page.locator("#side-verdict").get_attribute("data-verdict") == first.get_attribute("data-verdict")
    page.wait_for_timeout(700)
    screenshot(page, "search-compare", full_page=False)
    assert not page.console_errors, page.console_errors


def test_search_page_shows_the_api_error_for_an_unknown_catalog(page, catalog, api, sample_photos):
    page.goto(f"/search?catalog={CATALOG}")
    page.wait_for_selector("body[data-ready='true']")
    # A catalog removed behind the page's back: the API's own message must reach the user.
    page.evaluate("""() => { const s = document.querySelector('#catalog');
                             s.append(new Option('no-such-catalog', 'no-such-catalog'));
                             s.value = 'no-such-catalog'; }""")
    page.set_input_files("#file-q", str(sample_photos["rocket"]))
    error = page.locator("#error")
    error.wait_for(state="visible")
    with open(sample_photos["rocket"], "rb") as f:
        expected = api.post("/v1/catalogs/no-such-catalog/search", files={"image": f}).json()["detail"]
    assert error.inner_text() == expected
