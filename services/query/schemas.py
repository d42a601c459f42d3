"""Request and response bodies of the query API: the bounds here are the contract in /docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from twotower.index.store import MetadataValue

MAX_QUERY_CHARS = 2_000
MAX_K = 100


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("must not be empty or whitespace only")
    return value


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "how do I catch an exception?", "k": 5},
                {"query": "list comprehension", "k": 3, "where": {"source": "python-reference"}},
            ]
        },
    )

    query: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=MAX_QUERY_CHARS),
        AfterValidator(_not_blank),
    ] = Field(description=f"What to search for: non-blank text, at most {MAX_QUERY_CHARS:,} characters")
    k: int = Field(default=10, ge=1, le=MAX_K, description=f"How many results (1 to {MAX_K})")
    mode: Literal["dense", "hybrid"] = Field(
        default="dense",
        description="dense: nearest documents by the towers' cosine distance. hybrid: the dense "
        "candidates re-ranked by fusing the dense ranking with BM25 over those candidates (RRF).",
    )
    where: dict[str, Any] | None = Field(
        default=None,
        description="Optional Chroma metadata filter on the documents' metadata, e.g. "
        '`{"source": "faq"}`, `{"year": {"$gte": 2020}}`, `{"$and": [...]}`. '
        "An invalid filter is a 422.",
        examples=[{"source": "faq"}],
    )


class SearchHit(BaseModel):
    id: str
    title: str | None
    text: str = Field(description="The document's whole text")
    highlight: str | None = Field(
        default=None,
        description="The passage that matched best (long documents are searched passage by passage); "
        "null when the document is a single passage",
    )
    metadata: dict[str, MetadataValue]
    distance: float = Field(description="Cosine distance between query and document (0 = same direction)")
    score: float = Field(description="1 - distance: cosine similarity, higher is better")


class SearchResponse(BaseModel):
    query: str = Field(description="The query as searched (surrounding whitespace removed)")
    model_version: str = Field(description="Model version whose query tower embedded the query")
    took_ms: float = Field(description="Time to embed the query and search, in milliseconds")
    results: list[SearchHit] = Field(description="At most k hits, nearest first")
