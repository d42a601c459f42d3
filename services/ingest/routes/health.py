"""GET / (welcome), GET /healthz (alive), GET /readyz (model loaded and Chroma reachable)."""

from __future__ import annotations

from services.common.health import base_probes, service_router

router = service_router("ingest", base_probes, ready_summary="Readiness: model loaded and Chroma reachable")
