"""POST /search."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from services.common.backpressure import ModelRoute
from services.common.errors import BODY_RESPONSES, described
from services.common.state import ServiceState
from services.query.config import Settings
from services.query.deps import FeedbackDep, StateDep
from services.query.feedback import Feedback
from services.query.schemas import SearchRequest, SearchResponse
from services.query.search import search

# Every search runs the query tower: it passes the worker's backpressure gate first (ModelRoute).
router = APIRouter(prefix="/search", tags=["search"], route_class=ModelRoute)

_RESPONSES = {
    **BODY_RESPONSES,
    **described(
        503,
        "Chroma is unreachable or stalled, this worker is at its backpressure limit "
        "(QUERY_MAX_PENDING), or no documents were indexed yet for this model version (each model "
        "version has its own collection). `detail` says which; retry after `Retry-After` seconds.",
        "no documents indexed for model version 3f2a9c1b: ingest some first",
    ),
}


@router.post("", response_model=SearchResponse, responses=_RESPONSES, summary="Semantic search")
async def search_documents(body: SearchRequest, state: StateDep, feedback: FeedbackDep) -> Response:
    """Embeds the query with the **query tower** and returns the `k` nearest documents of this model
    version's collection, nearest first (cosine distance; `score` = 1 − distance)."""
    # The search blocks (the model, Chroma): it runs in the thread pool, as a plain `def` endpoint
    # would, and answers with its JSON already made there (the response model is built by the
    # search itself; FastAPI's second validation of it is skipped). Declared `async`: one thread
    # hop per search instead of two.
    return await run_in_threadpool(_search, state, body, feedback)


def _search(state: ServiceState[Settings], body: SearchRequest, feedback: Feedback) -> Response:
    response = search(state, body)
    response.search_id = feedback.search_id(state.store, response)
    return Response(response.model_dump_json(), media_type="application/json")
