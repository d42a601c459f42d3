"""Wiring of metrics and request ids into a service app: one call in each service's `main.py`.

    app = FastAPI(..., lifespan=lifespan(settings, "query", instrument=observed("query")))
    instrument_app(app, "query")

`observed` instruments the state before it loads anything: every encoder it loads (the served
version, and any version a rollout brings) has its tower calls timed, every Chroma call is
reported, and the served model version is recorded on every swap.
"""

from __future__ import annotations

from collections.abc import Callable
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


def instrument_state(state: ServiceState[Any], service: str) -> None:
    """Time every encoder the state loads (now and after a rollout), report every Chroma call,
    and keep the served-version info metric current."""
    state.models.wrappers.append(lambda encoder: instrument_encoder(encoder, service))
    state.store.observer = chroma_observer(service)
    state.on_swap.append(lambda serving: set_model_version(service, serving.version, serving.encoder.engine))


def observed(service: str) -> Callable[[ServiceState[Any]], None]:
    """For the lifespan's `instrument`: runs before the state loads its first model version."""
    return lambda state: instrument_state(state, service)


def instrument_app(app: FastAPI, service: str) -> None:
    """GET /metrics, request metrics and X-Request-ID on every response. Call after the app's
    other middleware, so that these two are outermost and see every answer (CORS's included)."""
    app.include_router(metrics_router)
    app.add_middleware(HttpMetricsMiddleware, service=service)
    # Added last = outermost: the request id is set before the metrics middleware runs.
    app.add_middleware(RequestIdMiddleware)
