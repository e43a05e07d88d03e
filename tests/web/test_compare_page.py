"""Compare page: upload two real photos in Chromium and read the verdict the page shows."""

from __future__ import annotations

import pytest

from .conftest import screenshot
from .photos import edited_copy

pytestmark = pytest.mark.browser


def _api_verdict(api, path_a, path_b) -> dict:
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        response = api.post("/v1/compare", files={"image_1": a, "image_2": b})
    assert response.status_code == 200, response.text
    return response.json()


def test_compare_page_shows_near_duplicate_verdict_for_an_edited_copy(page, api, sample_photos, tmp_path):
    original = sample_photos["china"]
    edited = edited_copy(original, tmp_path / "china-edited.jpg")

    page.goto("/")
    page.wait_for_selector("body[data-ready='true']")
    model_names = page.locator("#model option").all_inner_texts()
    assert any(name.startswith("tf_efficientnet_lite0") for name in model_names), model_names
    page.set_input_files("#file-a", str(original))
    page.set_input_files("#file-b", str(edited))
    # Previews appear at once, before the server answers.
    page.wait_for_function("['#preview-a', '#preview-b'].every(s => document.querySelector(s).naturalWidth > 0)")

    verdict = page.locator("#verdict")
    verdict.wait_for(state="visible")
    page.wait_for_function("document.querySelector('#verdict').dataset.verdict !== ''")
    # The same answer as the API's (asked after the page, so the page's timing is a cold one).
    expected = _api_verdict(api, original, edited)
    assert verdict.get_attribute("data-verdict") == expected["verdict"]
    assert expected["verdict"] in ("exact", "near_duplicate"), expected
    assert page.locator("#answer").inner_text().startswith("Match" if expected["is_match"] else "No match")
    assert page.locator("#score").inner_text() == f"{expected['score']:.4f}"
    if expected.get("copy_score") is not None:  # the copy detector decided the tier: the page says so
        assert page.locator("#copy").inner_text().startswith(f"{expected['copy_score']:.4f} ({expected['copy_model']}")
        assert "copy detector" in page.locator("#threshold").inner_text()
    else:
        assert page.locator("#copy").is_hidden()
        assert f"{expected['threshold']:.4f}" in page.locator("#threshold").inner_text()
    assert page.locator("#source").inner_text() == expected["threshold_source"]
    timing = page.locator("#timing").inner_text()
    assert "ms total" in timing and all(part in timing for part in ("wait", "decode", "embed", "geometry"))
    page.wait_for_timeout(700)  # let the gauge needle settle for the screenshot
    screenshot(page, "compare")
    assert not page.console_errors, page.console_errors


def test_compare_page_says_different_for_two_different_photos(page, api, sample_photos):
    expected = _api_verdict(api, sample_photos["china"], sample_photos["rocket"])
    assert not expected["is_match"], expected

    page.goto("/")
    page.wait_for_selector("body[data-ready='true']")
    page.set_input_files("#file-a", str(sample_photos["china"]))
    page.set_input_files("#file-b", str(sample_photos["rocket"]))
    page.wait_for_function("document.querySelector('#verdict').dataset.verdict !== ''")
    assert page.locator("#verdict").get_attribute("data-verdict") == expected["verdict"]
    assert page.locator("#answer").inner_text().startswith("No match")


def test_compare_page_shows_the_api_error_for_a_file_that_is_not_an_image(page, api, tmp_path, sample_photos):
    fake = tmp_path / "notes.jpg"
    fake.write_bytes(b"this is plain text, not a JPEG")
    page.goto("/")
    page.wait_for_selector("body[data-ready='true']")
    page.set_input_files("#file-a", str(sample_photos["china"]))
    page.set_input_files("#file-b", str(fake))
    error = page.locator("#error")
    error.wait_for(state="visible")
    text = error.inner_text()
    with open(sample_photos["china"], "rb") as a, open(fake, "rb") as b:
        refused = api.post("/v1/compare", files={"image_1": a, "image_2": b})
    assert 400 <= refused.status_code < 500
    assert text == refused.json()["detail"]
    assert page.locator("#result").is_hidden()
    page.locator("#drop-b.unreadable").wait_for()
    screenshot(page, "compare-error", full_page=False)


def test_compare_page_accepts_a_dropped_file(page, sample_photos):
    """Drag and drop: a DataTransfer carrying a real photo is dropped on the first zone."""
    page.goto("/")
    page.wait_for_selector("body[data-ready='true']")
    data = sample_photos["coffee"].read_bytes()
    transfer = page.evaluate_handle(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "coffee.jpg", {type: "image/jpeg"}));
            return dt;
        }""",
        list(data),
    )
    page.dispatch_event("#drop-a", "drop", {"dataTransfer": transfer})
    page.wait_for_function("document.querySelector('#preview-a').naturalWidth > 0")
    assert page.locator("#name-a").inner_text() == "coffee.jpg"
