"""GET / (welcome), GET /healthz (alive), GET /readyz (model, Chroma, this version's collection)."""

from __future__ import annotations

from services.common.health import CheckFailedError, Probe, base_probes, service_router
from services.common.state import ServiceState
from services.query.config import Settings
from services.query.deps import get_state
from services.query.search import not_indexed
from twotower.index.store import CollectionMissing


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


router = service_router(
    "query",
    get_state,
    readiness_probes,
    ready_summary="Readiness: model loaded, Chroma reachable, this model version's collection present and complete",
)
