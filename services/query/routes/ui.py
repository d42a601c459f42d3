"""GET /ui: the search page, and its script, stylesheet and icon (services/query/static/).

Plain files, no build step, nothing from a CDN: the page works on an offline machine. Its Content
Security Policy allows only this origin, so a stray external reference would fail loudly in the
browser test instead of quietly depending on the network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
# The only files served: a fixed list, so no request path ever reaches the filesystem.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # Revalidate, so a new release's page and script are picked up together.
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)


@router.get("")
def search_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/{name}")
def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such file: {name}")
    return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)
