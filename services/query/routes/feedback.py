"""POST /feedback: what happened to a search's results (clicks, judgements), stored for training."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.common.errors import BODY_RESPONSES, bounded, described, validation_error
from services.query.deps import FeedbackDep, StateDep
from services.query.feedback import FeedbackRefused
from services.query.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(prefix="/feedback", tags=["feedback"])

_RESPONSES = {
    **BODY_RESPONSES,
    **described(404, "Unknown or forged `search_id`, or feedback is off", "unknown search_id"),
    **described(410, "The search is older than QUERY_FEEDBACK_MAX_AGE_S", "the search is too old"),
    **described(
        429, "More feedback than this worker accepts per second; retry after `Retry-After`", "slow down"
    ),
    **described(
        503,
        "Chroma is unreachable, or the feedback store is full (QUERY_FEEDBACK_MAX_RECORDS); nothing stored",
        "the feedback store is full",
    ),
}


@router.post("", responses=_RESPONSES, summary="Feedback on a search's results")
async def post_feedback(body: FeedbackRequest, state: StateDep, feedback: FeedbackDep) -> FeedbackResponse:
    """Records which results of the search named by `search_id` were clicked, or judged relevant or
    not. Every id must be one that search returned (else 422). A 200 means the event is stored
    durably (Chroma acknowledged the write); training reads it (`make train ARGS="--source feedback"`)."""
    try:
        feedback.admit()
        return await run_in_threadpool(feedback.accept, state.store, body)
    except FeedbackRefused as exc:
        if exc.status == 422:  # the shape every 422 of this API has (ValidationErrorBody)
            return validation_error([{"type": "value_error", "loc": ["body"], "msg": exc.detail}])  # type: ignore[return-value]
        return JSONResponse(  # type: ignore[return-value]
            status_code=exc.status, content={"detail": bounded(exc.detail)}, headers=exc.headers
        )
