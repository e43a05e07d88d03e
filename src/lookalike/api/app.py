"""The FastAPI application: thin routers over the library, state loaded once in ``lifespan``.

``create_app(settings)`` is the only constructor (tests pass their own settings); ``lookalike
serve`` runs it under uvicorn. Swagger UI is served from files vendored into the package
(``web/static/vendor/swagger-ui``), so ``/docs`` renders with no network.
"""

from __future__ import annotations

import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from lookalike import __version__
from lookalike.comparison import EmbeddingCache
from lookalike.config import Settings, get_settings
from lookalike.embed import EmbedderPool
from lookalike.api.deps import AppState
from lookalike.api.inference import InferenceGate
from lookalike.api.errors import install as install_error_contract
from lookalike.api.guards import install as install_guards

log = logging.getLogger("lookalike.api")

# One router module per area; each exposes ``router``. Order = order in the OpenAPI docs.
ROUTERS: list[str] = [
    "lookalike.api.routes.legacy",
    "lookalike.api.routes.compare",
    "lookalike.api.routes.models",
    "lookalike.api.routes.feedback",
    "lookalike.api.routes.calibration",
    "lookalike.api.routes.catalogs",
    "lookalike.api.routes.web",
]


def _install_offline_docs(app: FastAPI) -> None:
    # Swagger UI 5 vendored from npm (swagger-ui-dist) into the package: the PyPI swagger-ui-bundle
    # ships 4.15, which cannot render FastAPI's OpenAPI 3.1 schema. See web/static/vendor/README.md.
    assets = Path(__file__).resolve().parents[1] / "web" / "static" / "vendor" / "swagger-ui"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="lookalike API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None, *, preload: bool = False) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = AppState(
            settings=settings,
            pool=EmbedderPool(settings),
            cache=EmbeddingCache(settings.embedding_cache_size),
            gate=InferenceGate(settings.max_queue, settings.inference_workers),
        )
        app.state.lookalike = state
        if preload:
            state.pool.get(settings.default_model)
            from lookalike.comparison import copy_detector

            copy_detector(state.pool.get, settings)  # compare's copy detector too (None, with a note, if missing)
        try:
            yield
        finally:
            state.gate.shutdown()
            for closer in state.extras.values():
                close = getattr(closer, "close", None)
                if callable(close):
                    close()

    app = FastAPI(
        title="lookalike",
        version=__version__,
        description="Are these two images the same thing? Which images in my catalog look like this one?",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_error_contract(app)
    _install_offline_docs(app)
    install_guards(app, settings)  # body size while streaming, rate limit, timeout
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    for module_name in ROUTERS:
        app.include_router(importlib.import_module(module_name).router)
    return app
