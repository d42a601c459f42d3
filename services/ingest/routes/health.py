"""GET / (welcome), GET /healthz (alive), GET /readyz (model loaded and Chroma reachable)."""

from __future__ import annotations

from services.common.health import base_probes, service_router
from services.ingest.deps import get_state

router = service_router(
    "ingest", get_state, base_probes, ready_summary="Readiness: model loaded and Chroma reachable"
)
