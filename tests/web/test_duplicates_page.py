"""Duplicates page: review a real cluster, store feedback on a pair, export the to-delete list."""

from __future__ import annotations

import csv
import io

import pytest

from .conftest import CATALOG, screenshot

pytestmark = pytest.mark.browser


def _feedback_for(api, a: int, b: int) -> list[dict]:
    response = api.get("/v1/feedback")
    assert response.status_code == 200, response.text
    return [r for r in response.json() if r["catalog"] == CATALOG and {r["id_a"], r["id_b"]} == {a, b}]


def test_duplicates_page_stores_feedback_and_exports_the_delete_list(page, catalog, api):
    cat_ids = {catalog[name] for name in ("chelsea.jpg", "chelsea-edited.jpg", "chelsea.png")}

    page.goto(f"/duplicates?catalog={CATALOG}")
    page.wait_for_selector("body[data-ready='true']")
    clusters = page.locator(".cluster")
    clusters.first.wait_for()
    cat_cluster = next(c for c in clusters.all()
                       if {int(i) for i in c.locator(".member").evaluate_all("ms => ms.map(m => m.dataset.id)")} & cat_ids)
    members = {int(i) for i in cat_cluster.locator(".member").evaluate_all("ms => ms.map(m => m.dataset.id)")}
    assert members == cat_ids, "the cat, its edited copy and its PNG form one group"
    assert cat_cluster.locator(".member[data-role='keep']").count() == 1
    page.wait_for_function("[...document.querySelectorAll('.member img')].every(i => i.complete && i.naturalWidth > 0)")

    row = cat_cluster.locator(".pair-row").first
    a, b = int(row.get_attribute("data-a")), int(row.get_attribute("data-b"))
    row.locator(".fb-same").click()
    page.locator(f".pair-row[data-a='{a}'][data-b='{b}'][data-label='same']").wait_for()
    stored = _feedback_for(api, a, b)
    assert [r["label"] for r in stored] == ["same"]

    with page.expect_download() as download_info:
        page.click("#export")
    rows = list(csv.DictReader(io.StringIO(download_info.value.path().read_text())))
    keep = int(cat_cluster.locator(".member[data-role='keep']").get_attribute("data-id"))
    to_delete = {int(r["id"]) for r in rows if int(r["cluster_id"]) == int(cat_cluster.get_attribute("data-cluster"))}
    assert to_delete == cat_ids - {keep}
    assert all(r["keep_id"] == str(keep) for r in rows if int(r["id"]) in cat_ids)
    screenshot(page, "duplicates")

    # The user disagrees: "not a duplicate" is stored too, and the page stops proposing a deletion
    # for the copy that was only linked to the kept image through that pair.
    row = page.locator(f".pair-row[data-a='{a}'][data-b='{b}']")
    row.locator(".fb-different").click()
    page.locator(f".pair-row[data-a='{a}'][data-b='{b}'][data-label='different']").wait_for()
    latest = max(_feedback_for(api, a, b), key=lambda r: r["id"])
    assert latest["label"] == "different"
    if keep in (a, b):
        other = b if keep == a else a
        assert page.locator(f".member[data-id='{other}']").get_attribute("data-role") == "spared"

    # Choosing another copy to keep changes the export.
    cluster = page.locator(f".cluster[data-cluster='{cat_cluster.get_attribute('data-cluster')}']")
    candidate = cluster.locator(".member[data-role='delete'], .member[data-role='spared']").first
    new_keep = int(candidate.get_attribute("data-id"))
    candidate.locator(".keep-this").click()
    assert page.locator(f".member[data-id='{new_keep}']").get_attribute("data-role") == "keep"
    with page.expect_download() as download_info:
        page.click("#export")
    rows = list(csv.DictReader(io.StringIO(download_info.value.path().read_text())))
    assert new_keep not in {int(r["id"]) for r in rows}
    assert {r["keep_id"] for r in rows if int(r["id"]) in cat_ids} <= {str(new_keep)}
    assert not page.console_errors, page.console_errors
