"""GET / (welcome), GET /healthz (alive), GET /readyz (model loaded and Chroma reachable)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.common.health import Liveness, Readiness, base_probes, check_readiness
from services.ingest.deps import StateDep
from services.ingest.schemas import Welcome

router = APIRouter(tags=["service"])


@router.get("/", summary="What this service is")
def welcome(state: StateDep) -> Welcome:
    return Welcome(service="ingest", model_version=state.version, collection=state.collection, docs="/docs")


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    summary="Readiness: model loaded and Chroma reachable",
    responses={503: {"model": Readiness, "description": "Not ready; `detail` says why"}},
)
def readyz(state: StateDep, response: Response) -> Readiness:
    readiness = check_readiness(state, base_probes(state))
    if not readiness.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return readiness
