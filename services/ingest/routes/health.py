"""GET / (welcome), GET /healthz (alive), GET /readyz (model loaded and Chroma reachable)."""

from __future__ import annotations

from services.common.health import base_probes, service_router
from services.ingest.deps import state_of

router = service_router(
    "ingest", state_of, base_probes, ready_summary="Readiness: model loaded and Chroma reachable"
)
