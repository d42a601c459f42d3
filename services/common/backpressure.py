"""Backpressure: a bounded number of requests per worker (`max_pending`) may wait for the model;
the next one gets a 503 with Retry-After at once, instead of joining a queue without end.

Routes that run the model use `ModelRoute`: it admits the request before FastAPI reads the body and
lets it go when the handler returns, so the count covers every request that holds or waits for the
model. Everything here runs on the event loop (one thread per worker), so the counter needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# Seconds to wait before retrying an overloaded worker: the queue moves in well under a second.
OVERLOAD_RETRY_AFTER_S = 1


class Overloaded(Exception):  # noqa: N818 - named for what clients see
    """This worker already has its limit of requests waiting for the model: a 503 with Retry-After."""

    def __init__(self, limit: int, retry_after_s: int = OVERLOAD_RETRY_AFTER_S) -> None:
        super().__init__(
            f"overloaded: {limit} requests are already waiting for the model here; retry shortly"
        )
        self.limit, self.retry_after_s = limit, retry_after_s


class ModelGate:
    """Counts the requests admitted to the model (running or waiting); refuses past `limit`."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the backpressure limit must be at least 1")
        self.limit = limit
        self.pending = 0
        self.refused = 0

    def enter(self) -> None:
        if self.pending >= self.limit:
            self.refused += 1
            raise Overloaded(self.limit)
        self.pending += 1

    def leave(self) -> None:
        self.pending -= 1


def gate_of(request: Request) -> ModelGate:
    """The app's gate, made on first use with the service's `max_pending` setting."""
    gate: ModelGate | None = getattr(request.app.state, "model_gate", None)
    if gate is None:
        gate = ModelGate(request.state.service.settings.max_pending)
        request.app.state.model_gate = gate
    return gate


class ModelRoute(APIRoute):
    """An APIRoute whose requests pass the app's ModelGate before their body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def gated(request: Request) -> Response:
            gate = gate_of(request)
            gate.enter()
            try:
                return await handler(request)
            finally:
                gate.leave()

        return gated
