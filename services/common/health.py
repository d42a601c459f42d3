"""Liveness and readiness, shared by both services.

Readiness is an ordered list of named checks; a service adds its own (the query service checks
that its model version's collection exists). The first failing check gives the 503's reason, and
the checks after it are not run (they would only repeat it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from services.common.state import ServiceState
from twotower.index.store import CollectionMissing, StoreUnavailable

# A check returns a short description of what it found, or raises one of these.
Probe = Callable[[], str]


class CheckFailedError(Exception):
    """A readiness check's own failure (besides the store's errors)."""


class Check(BaseModel):
    name: str = Field(description="What was checked", examples=["chroma"])
    ok: bool
    detail: str = Field(description="What the check found", examples=["reachable at http://chroma:8000"])


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
        return f"reachable at {state.store.address}"

    return {"model": model, "chroma": chroma}


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
            failed = f"{name}: {exc}"
            checks.append(Check(name=name, ok=False, detail=str(exc)))
    return Readiness(ready=failed is None, model_version=state.version, detail=failed, checks=checks)


def service_router(
    service: str,
    get_state: Callable[..., ServiceState[Any]],
    probes: Callable[[ServiceState[Any]], dict[str, Probe]],
    ready_summary: str,
) -> APIRouter:
    """GET / (welcome), GET /healthz (alive) and GET /readyz (`probes`, in order) for a service."""
    router = APIRouter(tags=["service"])
    state_dep = Depends(get_state)

    @router.get("/", summary="What this service is")
    def welcome(state: ServiceState[Any] = state_dep) -> Welcome:
        return Welcome(
            service=service, model_version=state.version, collection=state.collection, docs="/docs"
        )

    @router.get("/healthz", summary="Liveness: the process answers")
    def healthz() -> Liveness:
        return Liveness()

    @router.get(
        "/readyz",
        summary=ready_summary,
        responses={503: {"model": Readiness, "description": "Not ready; `detail` says why"}},
    )
    def readyz(response: Response, state: ServiceState[Any] = state_dep) -> Readiness:
        readiness = check_readiness(state, probes(state))
        if not readiness.ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return readiness

    return router
