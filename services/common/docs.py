"""Interactive API docs (`/docs`, Swagger UI) that work on an offline machine.

FastAPI's own `/docs` page loads Swagger UI's script and stylesheet from a CDN, so it stays blank
without internet. Here the same page loads them from this service, out of the pinned
`swagger-ui-bundle-v2` package (Swagger UI 5, which renders FastAPI's OpenAPI 3.1). ReDoc has no
such package, so it is not served.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS = "/docs"
ASSETS = "/docs/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def serve_docs_offline(app: FastAPI) -> None:
    """Add `/docs` with local assets. Build the app with `docs_url=None, redoc_url=None`."""
    if app.docs_url is not None or app.redoc_url is not None or app.openapi_url is None:
        raise ValueError("build the app with docs_url=None and redoc_url=None, and keep openapi_url")
    openapi_url = app.openapi_url
    app.mount(ASSETS, StaticFiles(directory=Path(str(swagger_ui_path))), name="swagger-ui-assets")

    @app.get(DOCS, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
            # The validator badge would ask validator.swagger.io about the spec.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
