"""The web UI at ``/``: four small pages over the public API, no build step.

Pages are plain HTML fragments put into one layout here (no template engine: the only dynamic
parts are the page's name and a few settings the scripts need). Everything the pages show comes
from the JSON API through ``fetch``, so the UI can never see more than an API client can; catalog
images are loaded only through id URLs (the thumbnail and file endpoints), never by path.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from lookalike import __version__
from lookalike.api.deps import SettingsDep

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
TEMPLATES = WEB_DIR / "templates"

# path -> (page name, title). The page name picks templates/<name>.html and static/<name>.js.
PAGES: dict[str, tuple[str, str]] = {
    "/": ("compare", "Compare"),
    "/search": ("search", "Search"),
    "/duplicates": ("duplicates", "Duplicates"),
    "/calibration": ("calibration", "Calibration"),
}

router = APIRouter(include_in_schema=False)
_static = StaticFiles(directory=WEB_DIR / "static")


@router.get("/static/{path:path}")
async def static_file(path: str, request: Request) -> Response:
    """The UI's own CSS/JS/vendored files (a route, not a mount: routers drop mounts on older FastAPI).

    Starlette's ``StaticFiles`` does the work: no path outside the folder, ETag and Last-Modified."""
    return await _static.get_response(path, request.scope)


@lru_cache(maxsize=16)
def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.html").read_text(encoding="utf-8")


def _nav(current: str) -> str:
    links = []
    for path, (name, title) in PAGES.items():
        here = ' aria-current="page"' if name == current else ""
        links.append(f'<a href="{path}"{here}>{title}</a>')
    links.append('<a href="/docs" class="external">API docs</a>')
    return "\n".join(links)


def render_page(name: str, title: str, settings) -> str:
    """The layout with one page's body; the scripts get their settings as inline JSON."""
    config = {
        "page": name,
        "version": __version__,
        "default_model": settings.default_model,
        "input_size": settings.input_size,
        "allowed_input_sizes": list(settings.allowed_input_sizes),
        "api_key_required": settings.api_key is not None,
    }
    # "<" escaped so no value can close the <script> element it sits in.
    config_json = json.dumps(config).replace("<", "\\u003c")
    return (
        _template("base")
        .replace("{{title}}", html.escape(title))
        .replace("{{nav}}", _nav(name))
        .replace("{{content}}", _template(name))
        .replace("{{config}}", config_json)
        .replace("{{page}}", name)
        .replace("{{version}}", html.escape(__version__))
    )


def _page_route(name: str, title: str):
    def page(settings: SettingsDep) -> HTMLResponse:
        return HTMLResponse(render_page(name, title, settings))

    page.__name__ = f"web_{name}"
    return page


for _path, (_name, _title) in PAGES.items():
    router.add_api_route(_path, _page_route(_name, _title), methods=["GET"], response_class=HTMLResponse)
