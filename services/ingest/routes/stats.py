"""GET /stats: how many documents this model version's collection holds."""

from __future__ import annotations

from fastapi import APIRouter

from services.common.errors import STORE_RESPONSES
from services.ingest.deps import StateDep
from services.ingest.indexer import index_stats
from services.ingest.schemas import StatsResponse

router = APIRouter(prefix="/stats", tags=["documents"])


@router.get("", responses=STORE_RESPONSES, summary="Document count of the current collection")
def stats(state: StateDep) -> StatsResponse:
    return index_stats(state)
