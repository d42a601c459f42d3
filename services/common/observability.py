"""Metrics, request ids (asgi-correlation-id) and the access log, wired into a service app:
`lifespan(..., instrument=observed("query"))` and `instrument_app(app, "query")` in its `main.py`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from services.common.metrics import TimedEncoder, chroma_observer, instrument_http, set_model_version
from services.common.metrics import router as metrics_router
from services.common.state import ServiceState

REQUEST_ID = "X-Request-ID"
# Long enough for a UUID, a W3C trace id or a base64 token; nothing that could break a log line
# or a header (no spaces, quotes or control characters).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def observed(service: str) -> Callable[[ServiceState[Any]], None]:
    """For the lifespan's `instrument` (it runs before the state loads its first model version)."""

    def instrument(state: ServiceState[Any]) -> None:
        state.models.wrappers.append(lambda encoder: TimedEncoder(encoder, service))
        state.store.observer = chroma_observer(service)
        state.on_swap.append(
            lambda serving: set_model_version(service, serving.version, serving.encoder.engine)
        )

    return instrument


async def _internal_error(request: Request, exc: Exception) -> PlainTextResponse:
    # Starlette answers an unhandled error outside every middleware: the id is added here.
    return PlainTextResponse("Internal Server Error", 500, headers={REQUEST_ID: correlation_id.get() or ""})


def instrument_app(app: FastAPI, service: str) -> None:
    """GET /metrics, request metrics, the access log and X-Request-ID on every response. Call after
    the app's other middleware, so that these are outermost and see every answer (CORS's included)."""
    app.include_router(metrics_router)
    instrument_http(app, service)
    app.add_exception_handler(Exception, _internal_error)
    # Added last = outermost: the id is set before the metrics middleware writes the access line.
    # The client's id is kept when sane (a log line or header cannot be broken with it), else replaced.
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID,
        validator=lambda given: SANE_REQUEST_ID.fullmatch(given) is not None,
    )
