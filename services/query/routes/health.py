"""GET / (welcome), GET /healthz (alive), GET /readyz (model, Chroma, serving pointer, collection)."""

from __future__ import annotations

import logging

import numpy as np

from services.common.health import CheckFailedError, Probe, base_probes, service_router
from services.common.state import ServiceState
from services.query.config import Settings
from services.query.search import not_indexed
from twotower.index.store import CollectionMissing, StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)


def readiness_probes(state: ServiceState[Settings]) -> dict[str, Probe]:
    """Model loaded, Chroma reachable, following the serving pointer, and documents indexed for the
    served version. (A version is served only once its collection is complete: a rollout moves the
    pointer after its backfill.) More checks go here, in the order they should be reported."""

    def collection() -> str:
        serving = state.current
        index = serving.index
        try:
            count = index.store.count(index.version)
        except CollectionMissing as exc:
            raise CheckFailedError(not_indexed(state)) from exc
        # A collection that counts its records may still fail to search them (Chroma 1.5 users
        # report vector indexes that do not load after a restart): ask for one neighbour.
        probe = np.zeros(serving.encoder.dim, dtype=np.float32)
        probe[0] = 1.0
        try:
            index.candidates(probe, 1)
        except (StoreUnavailable, StoreRejected) as exc:
            log.error("readiness: %s cannot be searched: %s", index.collection, exc)
            raise CheckFailedError(
                f"{index.collection} holds {count} records but cannot be searched (the service log says "
                "why); if Chroma is otherwise up, its vector index is damaged: rebuild it (README, "
                "'A damaged index')"
            ) from exc
        return f"{count} records in {index.collection}, searchable"

    return {**base_probes(state), "collection": collection}


router = service_router(
    "query",
    readiness_probes,
    ready_summary="Readiness: model loaded, Chroma reachable, serving the pointer's version, its collection present",
)
