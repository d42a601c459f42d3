"""POST /documents, GET /documents/{id}, DELETE /documents/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from services.common.backpressure import ModelRoute
from services.common.errors import BODY_RESPONSES, STORE_RESPONSES, UNAUTHORIZED, described
from services.common.metrics import DOCUMENTS_DELETED, DOCUMENTS_INGESTED
from services.ingest.deps import StateDep, WriteAccess
from services.ingest.indexer import ClientGone, delete_document, fetch_document, index_documents
from services.ingest.schemas import (
    ID_DESCRIPTION,
    MAX_ID_CHARS,
    DeleteResponse,
    DocumentOut,
    IngestRequest,
    IngestResponse,
    valid_id,
)

router = APIRouter(tags=["documents"])
# POST runs the document tower: it passes the worker's backpressure gate first (ModelRoute).
model_router = APIRouter(route_class=ModelRoute)

_NOT_FOUND = described(404, "No document with this id", "no document with id 'faq-1' in docs-3f2a9c1b")
# `:path`, so that an id with a "/" (which no stored id has) is a 422 naming the rule, not a 404.
DocIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_CHARS, description=ID_DESCRIPTION),
    AfterValidator(valid_id),
]


@model_router.post(
    "/documents",
    dependencies=[WriteAccess],
    responses={**UNAUTHORIZED, **BODY_RESPONSES, **STORE_RESPONSES},
    summary="Embed and store documents (upsert)",
)
async def upsert_documents(body: IngestRequest, state: StateDep, request: Request) -> IngestResponse:
    """Embeds each document (title and text) with the document tower and upserts it into this model
    version's collection. Answers only after Chroma confirmed every document; posting an id again
    replaces it, so retrying a failed request is safe. A client that disconnects stops the work
    left: the documents stored until then are whole, the others untouched."""
    settings = state.settings
    if len(body.documents) > settings.max_documents_per_request:
        msg = f"at most {settings.max_documents_per_request} documents per request, got {len(body.documents)}"
        raise RequestValidationError([{"type": "too_long", "loc": ("body", "documents"), "msg": msg}])
    # The work a request causes grows with its characters: bounded before any of it starts.
    chars = sum(d.chars for d in body.documents)
    if chars > settings.max_request_chars:
        raise HTTPException(
            413,
            f"at most {settings.max_request_chars:,} characters of text and titles per request "
            f"(INGEST_MAX_REQUEST_CHARS), got {chars:,}: send the documents in several smaller "
            "requests (`python -m services.loader` does)",
        )
    try:
        response = await index_documents(state, body.documents, request.is_disconnected)
    except ClientGone as gone:
        DOCUMENTS_INGESTED.labels("ingest").inc(len(gone.stored))
        # Nobody reads this answer; the access log and metrics show it as nginx's "client closed".
        raise HTTPException(499, str(gone)) from None
    DOCUMENTS_INGESTED.labels("ingest").inc(response.upserted)
    return response


@router.get(
    "/documents/{doc_id:path}", responses={**_NOT_FOUND, **STORE_RESPONSES}, summary="Read one document"
)
def get_document(doc_id: DocIdPath, state: StateDep) -> DocumentOut:
    return fetch_document(state, doc_id)


@router.delete(
    "/documents/{doc_id:path}",
    dependencies=[WriteAccess],
    responses={**_NOT_FOUND, **UNAUTHORIZED, **STORE_RESPONSES},
    summary="Delete one document",
)
def remove_document(doc_id: DocIdPath, state: StateDep) -> DeleteResponse:
    response = delete_document(state, doc_id)
    DOCUMENTS_DELETED.labels("ingest").inc()
    return response


router.include_router(model_router)
