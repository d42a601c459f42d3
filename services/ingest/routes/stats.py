"""GET /stats: how many documents and passages this model version's collection holds."""

from __future__ import annotations

import asyncio

import anyio
from fastapi import APIRouter, HTTPException

from services.common.errors import RETRY_AFTER_S, STORE_RESPONSES
from services.ingest.deps import StateDep
from services.ingest.indexer import index_stats
from services.ingest.schemas import StatsResponse

router = APIRouter(prefix="/stats", tags=["documents"])

# A stalled Chroma holds each of its calls up to chroma_timeout_s; a dashboard polling /stats gets
# its 503 sooner. The counting thread is left to finish (or time out) on its own.
STATS_TIMEOUT_S = 4.0


@router.get("", responses=STORE_RESPONSES, summary="Document and passage counts of the current collection")
async def stats(state: StateDep) -> StatsResponse:
    counting = asyncio.ensure_future(anyio.to_thread.run_sync(index_stats, state))
    try:
        return await asyncio.wait_for(asyncio.shield(counting), STATS_TIMEOUT_S)
    except TimeoutError:
        raise HTTPException(
            503,
            f"the search index (Chroma) did not answer within {STATS_TIMEOUT_S:g}s; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
