"""Wiring of metrics and request ids into a service app: one call in each service's `main.py`.

    app = FastAPI(..., lifespan=observed_lifespan("query", lifespan(settings)))
    instrument_app(app, "query")

The lifespan wrapper instruments what the service's lifespan opened: the encoder's tower calls are
timed, every Chroma call is reported, and the served model version is recorded. Code that swaps
the encoder at run time installs `instrument_encoder(new, service)` and calls `set_model_version`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from services.common.metrics import (
    HttpMetricsMiddleware,
    chroma_observer,
    instrument_encoder,
    set_model_version,
)
from services.common.metrics import router as metrics_router
from services.common.request_id import RequestIdMiddleware
from services.common.state import ServiceState

Lifespan = Callable[[Any], AbstractAsyncContextManager[dict[str, ServiceState[Any]]]]


def instrument_state(state: ServiceState[Any], service: str) -> None:
    # The state's encoder field is private to state.py; this is the one place outside it that
    # sets it, once, before the first request.
    state._encoder = instrument_encoder(state.encoder, service)
    # ChromaStore reports each call to `observer` (operation, seconds, ok) once the index layer
    # has the hook; until then the attribute is set and never called.
    state.store.observer = chroma_observer(service)  # type: ignore[attr-defined]
    set_model_version(service, state.version, state.encoder.engine)


def observed_lifespan(service: str, inner: Lifespan) -> Lifespan:
    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, ServiceState[Any]]]:
        async with inner(app) as app_state:
            instrument_state(app_state["service"], service)
            yield app_state

    return run


def instrument_app(app: FastAPI, service: str) -> None:
    """GET /metrics, request metrics and X-Request-ID on every response. Call after the app's
    other middleware, so that these two are outermost and see every answer (CORS's included)."""
    app.include_router(metrics_router)
    app.add_middleware(HttpMetricsMiddleware, service=service)
    # Added last = outermost: the request id is set before the metrics middleware runs.
    app.add_middleware(RequestIdMiddleware)
