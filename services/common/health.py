"""Liveness and readiness, shared by both services.

Readiness is an ordered list of named checks (a service adds its own); the first failure gives the
503's reason and the checks after it are not run. Neither probe waits behind the model or a stalled
Chroma: see `service_router` and `ReadinessMonitor`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from services.common.state import ServiceState, state_of
from twotower.index.store import CollectionMissing, StoreUnavailable

log = logging.getLogger(__name__)

# A check returns a short description of what it found, or raises one of these.
Probe = Callable[[], str]
# /readyz waits at most this long for its checks: a stalled Chroma is "not ready", not a hang.
READY_TIMEOUT_S = 2.0


class CheckFailedError(Exception):
    """A readiness check's own failure (besides the store's errors)."""


class Check(BaseModel):
    name: str = Field(description="What was checked", examples=["chroma"])
    ok: bool
    detail: str = Field(description="What the check found", examples=["reachable"])


class Readiness(BaseModel):
    ready: bool
    model_version: str
    detail: str | None = Field(
        default=None, description="Why the service is not ready (the first failed check)"
    )
    checks: list[Check]


class Welcome(BaseModel):
    service: str = Field(examples=["query"])
    model_version: str
    collection: str
    docs: str = Field(description="Interactive API documentation", examples=["/docs"])


class Liveness(BaseModel):
    status: str = Field(default="alive", examples=["alive"])


def base_probes(state: ServiceState) -> dict[str, Probe]:
    """Model loaded, Chroma reachable: what every service needs."""

    def model() -> str:
        if not state.model_loaded:
            raise CheckFailedError("model not loaded")
        return f"model version {state.version} loaded"

    def chroma() -> str:
        state.store.heartbeat()
        return "reachable"

    def serving() -> str:
        # What the serving pointer says (read by the state's watcher), and that this process follows it.
        pointer = state.current.pointer
        if pointer is None:
            raise CheckFailedError(state.problem or "the serving pointer has not been read yet")
        if pointer.version != state.version:
            raise CheckFailedError(f"switching from model version {state.version} to {pointer.version}")
        if pointer.target:
            return f"serving {pointer.version}; rollout to {pointer.target} {pointer.state}"
        return f"serving {pointer.version}"

    return {"model": model, "chroma": chroma, "serving": serving}


def check_readiness(state: ServiceState, probes: dict[str, Probe]) -> Readiness:
    checks: list[Check] = []
    failed: str | None = None
    for name, probe in probes.items():
        if failed is not None:
            checks.append(Check(name=name, ok=False, detail=f"not checked: {failed}"))
            continue
        try:
            checks.append(Check(name=name, ok=True, detail=probe()))
        except (CheckFailedError, StoreUnavailable, CollectionMissing) as exc:
            if isinstance(exc, StoreUnavailable):
                # Chroma's address and raw errors are for the log, not for whoever calls /readyz.
                log.warning("readiness check %s failed: %s", name, exc)
                reason = "Chroma is unreachable, stalled or failing (details in the service log)"
            else:
                reason = str(exc)
            failed = f"{name}: {reason}"
            checks.append(Check(name=name, ok=False, detail=reason))
    return Readiness(ready=failed is None, model_version=state.version, detail=failed, checks=checks)


class ReadinessMonitor:
    """Runs the readiness checks off the event loop and off the request thread pool (which may be
    full of model work) and waits at most READY_TIMEOUT_S for them. Probes that arrive while a
    check runs share its result, so a burst of probes costs Chroma one round of checks, and a
    stalled check is never started twice."""

    def __init__(self, run: Callable[[], Readiness]) -> None:
        self._run = run
        self._limiter = anyio.CapacityLimiter(1)  # one check at a time, on its own thread
        self._pending: asyncio.Future[Readiness] | None = None

    async def current(self, model_version: str) -> Readiness:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(anyio.to_thread.run_sync(self._run, limiter=self._limiter))
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending), READY_TIMEOUT_S)
        except TimeoutError:
            detail = f"readiness checks did not finish within {READY_TIMEOUT_S:g}s (Chroma stalled?)"
            return Readiness(ready=False, model_version=model_version, detail=detail, checks=[])


def service_router(
    service: str,
    probes: Callable[[ServiceState[Any]], dict[str, Probe]],
    ready_summary: str,
) -> APIRouter:
    """GET / (welcome), GET /healthz (alive) and GET /readyz (`probes`, in order) for a service.

    All three are `async` and take no synchronous dependency: they answer on the event loop and
    never wait for a thread of the pool that the model routes use."""
    router = APIRouter(tags=["service"])

    @router.get("/", summary="What this service is")
    async def welcome(request: Request) -> Welcome:
        state = state_of(request)
        return Welcome(
            service=service, model_version=state.version, collection=state.collection, docs="/docs"
        )

    @router.get("/healthz", summary="Liveness: the process answers (never waits for the model or Chroma)")
    @router.head("/healthz", include_in_schema=False)  # some probes and uptime checkers send HEAD
    async def healthz() -> Liveness:
        return Liveness()

    @router.get(
        "/readyz",
        summary=ready_summary,
        responses={503: {"model": Readiness, "description": "Not ready; `detail` says why"}},
    )
    async def readyz(request: Request, response: Response) -> Readiness:
        state = state_of(request)
        monitor: ReadinessMonitor | None = getattr(request.app.state, "readiness", None)
        if monitor is None:
            monitor = ReadinessMonitor(lambda: check_readiness(state, probes(state)))
            request.app.state.readiness = monitor
        readiness = await monitor.current(state.version)
        if not readiness.ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return readiness

    return router
