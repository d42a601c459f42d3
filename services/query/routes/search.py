"""POST /search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.query.deps import StateDep
from services.query.schemas import SearchRequest, SearchResponse
from services.query.search import search

router = APIRouter(prefix="/search", tags=["search"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Chroma is unreachable, or no documents were indexed yet for this model version "
        "(each model version has its own collection). `detail` says which.",
        "content": {
            "application/json": {
                "example": {"detail": "no documents indexed for model version 3f2a9c1b: ingest some first"}
            }
        },
    },
}


@router.post("", responses=_RESPONSES, summary="Semantic search")
def search_documents(body: SearchRequest, state: StateDep) -> SearchResponse:
    """Embeds the query with the **query tower** and returns the `k` nearest documents of this model
    version's collection, nearest first (cosine distance; `score` = 1 − distance)."""
    return search(state, body)
