"""GET / (welcome), GET /healthz (alive), GET /readyz (model, Chroma, this version's collection)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.common.health import CheckFailedError, Liveness, Probe, Readiness, base_probes, check_readiness
from services.common.state import ServiceState
from services.common.store import CollectionMissing
from services.query.config import Settings
from services.query.deps import StateDep
from services.query.schemas import Welcome
from services.query.search import not_indexed

router = APIRouter(tags=["service"])


def readiness_probes(state: ServiceState[Settings]) -> dict[str, Probe]:
    """Model loaded, Chroma reachable, documents indexed for this model version, and not a reindex
    target still being filled. More checks go here, in the order they should be reported."""

    def collection() -> str:
        try:
            count = state.store.count(state.version)
        except CollectionMissing as exc:
            raise CheckFailedError(not_indexed(state)) from exc
        return f"{count} documents in {state.collection}"

    def complete() -> str:
        # A reindex into this version's collection that has not finished (see training/reindex.py).
        reason = state.store.incomplete_reason(state.version)
        if reason is not None:
            raise CheckFailedError(reason)
        return "complete"

    return {**base_probes(state), "collection": collection, "complete": complete}


@router.get("/", summary="What this service is")
def welcome(state: StateDep) -> Welcome:
    return Welcome(service="query", model_version=state.version, collection=state.collection, docs="/docs")


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    summary="Readiness: model loaded, Chroma reachable, this model version's collection present and complete",
    responses={503: {"model": Readiness, "description": "Not ready; `detail` says why"}},
)
def readyz(state: StateDep, response: Response) -> Readiness:
    readiness = check_readiness(state, readiness_probes(state))
    if not readiness.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return readiness
