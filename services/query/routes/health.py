"""GET / (welcome), GET /healthz (alive), GET /readyz (model, Chroma, serving pointer, collection)."""

from __future__ import annotations

from services.common.health import CheckFailedError, Probe, base_probes, service_router
from services.common.state import ServiceState
from services.query.config import Settings
from services.query.deps import get_state
from services.query.search import not_indexed
from twotower.index.store import CollectionMissing


def readiness_probes(state: ServiceState[Settings]) -> dict[str, Probe]:
    """Model loaded, Chroma reachable, following the serving pointer, and documents indexed for the
    served version. (A version is served only once its collection is complete: a rollout moves the
    pointer after its backfill.) More checks go here, in the order they should be reported."""

    def collection() -> str:
        index = state.current.index
        try:
            count = index.store.count(index.version)
        except CollectionMissing as exc:
            raise CheckFailedError(not_indexed(state)) from exc
        return f"{count} records in {index.collection}"

    return {**base_probes(state), "collection": collection}


router = service_router(
    "query",
    get_state,
    readiness_probes,
    ready_summary="Readiness: model loaded, Chroma reachable, serving the pointer's version, its collection present",
)
