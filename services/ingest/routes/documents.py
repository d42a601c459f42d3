"""POST /documents, GET /documents/{id}, DELETE /documents/{id}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from services.common.backpressure import model_route
from services.common.errors import BODY_RESPONSES, STORE_RESPONSES, UNAUTHORIZED
from services.common.metrics import count_deleted, count_ingested
from services.ingest.deps import StateDep, WriteAccess
from services.ingest.indexer import delete_document, fetch_document, index_documents
from services.ingest.schemas import (
    ID_DESCRIPTION,
    MAX_ID_CHARS,
    DeleteResponse,
    DocumentOut,
    IngestRequest,
    IngestResponse,
    valid_id,
)

router = APIRouter(prefix="/documents", tags=["documents"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No document with this id",
        "content": {
            "application/json": {"example": {"detail": "no document with id 'faq-1' in docs-3f2a9c1b"}}
        },
    }
}
_UNAUTHORIZED = UNAUTHORIZED
# `:path`, so that an id with a "/" (which no stored id has) is a 422 naming the rule, not a 404.
DocIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_CHARS, description=ID_DESCRIPTION),
    AfterValidator(valid_id),
]


# POST runs the document tower: it passes the worker's backpressure gate first (model_route).
@model_route(
    router,
    "",
    methods=["POST"],
    dependencies=[WriteAccess],
    responses={**_UNAUTHORIZED, **BODY_RESPONSES, **STORE_RESPONSES},
    summary="Embed and store documents (upsert)",
)
def upsert_documents(body: IngestRequest, state: StateDep) -> IngestResponse:
    """Embeds each document (title and text) with the document tower and upserts it into this model
    version's collection. Answers only after Chroma confirmed every document; posting an id again
    replaces it, so retrying a failed request is safe."""
    limit = state.settings.max_documents_per_request
    if len(body.documents) > limit:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "documents"),
                    "msg": f"at most {limit} documents per request, got {len(body.documents)}",
                    "input": None,
                }
            ]
        )
    response = index_documents(state, body.documents)
    count_ingested("ingest", response.upserted)
    return response


@router.get("/{doc_id:path}", responses={**_NOT_FOUND, **STORE_RESPONSES}, summary="Read one document")
def get_document(doc_id: DocIdPath, state: StateDep) -> DocumentOut:
    return fetch_document(state, doc_id)


@router.delete(
    "/{doc_id:path}",
    dependencies=[WriteAccess],
    responses={**_NOT_FOUND, **_UNAUTHORIZED, **STORE_RESPONSES},
    summary="Delete one document",
)
def remove_document(doc_id: DocIdPath, state: StateDep) -> DeleteResponse:
    response = delete_document(state, doc_id)
    count_deleted("ingest")
    return response
