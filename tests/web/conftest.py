"""A real ``lookalike serve`` on loopback and a real Chromium (Debian's, driven by Playwright).

No browser is downloaded: Playwright is pointed at ``/usr/bin/chromium`` (apt package
``chromium``); the tests skip with a reason when it or the ``playwright`` package is missing.
Each test saves a screenshot of its page to ``docs/screenshots/`` so the README's images stay true.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from ..conftest import REPO
from ..server import running_server

CHROMIUM = Path(os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STARTUP_TIMEOUT_S = 300  # the first run may export the default model to ONNX


def serving(settings, data_dir: Path, **env: str):  # noqa: ANN201 - a context manager yielding the base URL
    """A real ``lookalike serve`` subprocess (offline, real weights, ``data_dir`` for catalogs)."""
    return running_server(settings, timeout=STARTUP_TIMEOUT_S, LOOKALIKE_DATA_DIR=str(data_dir), **env)


@pytest.fixture(scope="session")
def server(settings, tmp_path_factory: pytest.TempPathFactory):
    """Base URL of the shared real server the page tests drive."""
    with serving(settings, tmp_path_factory.mktemp("web-data")) as base:
        yield base


@pytest.fixture(scope="session")
def api(server):
    with httpx.Client(base_url=server, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [test] extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page whose console errors fail nothing but are kept for the failure message."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server,
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console_errors = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    yield page
    context.close()


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save the page as docs/screenshots/<name>.png (the README shows these)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


CATALOG = "photos"


@pytest.fixture(scope="session")
def catalog(api, sample_photos, tmp_path_factory) -> dict[str, int]:
    """A small real catalog built through the API: six sample photos, an edited copy of the cat and
    a lossless PNG of it (same pixels). Returns filename -> id."""
    from PIL import Image

    from .photos import edited_copy

    folder = tmp_path_factory.mktemp("catalog-extra")
    extra = [edited_copy(sample_photos["chelsea"], folder / "chelsea-edited.jpg"), folder / "chelsea.png"]
    with Image.open(sample_photos["chelsea"]) as image:
        image.save(extra[1], "PNG")
    paths = [*sample_photos.values(), *extra]
    files = [("files", (p.name, p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg")) for p in paths]
    response = api.post(f"/v1/catalogs/{CATALOG}/images", files=files)
    if response.status_code in (404, 405):
        pytest.skip("the catalog endpoints (/v1/catalogs/...) are not served by this build")
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body["errors"], body["errors"]
    return {item["filename"]: item["id"] for item in body["added"]}
