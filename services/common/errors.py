"""HTTP answers for the store's errors, shared by both services.

A Chroma server that is down or failing is a 503 with the reason (never a 500); a `where` filter
that Chroma rejects is the client's fault, a 422 shaped like FastAPI's own validation errors.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from twotower.index.store import InvalidFilter, StoreUnavailable

# Seconds a client should wait before retrying a 503.
RETRY_AFTER_S = 5


def unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=503, content={"detail": detail}, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return unavailable(str(exc))


async def _invalid_filter(request: Request, exc: Exception) -> JSONResponse:
    error = {"type": "invalid_filter", "loc": ["body", "where"], "msg": f"invalid where filter: {exc}"}
    return JSONResponse(status_code=422, content={"detail": [error]})


def register_store_errors(app: FastAPI) -> None:
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(InvalidFilter, _invalid_filter)


# For the OpenAPI `responses=` of routes that reach Chroma.
STORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The Chroma server is unreachable or failed; nothing was changed. Retry later.",
        "content": {
            "application/json": {
                "example": {"detail": "Chroma server at http://chroma:8000 is unreachable (upsert): ..."}
            }
        },
    }
}
