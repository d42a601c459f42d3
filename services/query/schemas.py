"""Request and response bodies of the query API: the bounds here are the contract in /docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from twotower.index.store import MetadataValue
from twotower.limits import (
    MAX_ID_CHARS,
    MAX_K,
    MAX_QUERY_CHARS,
    MAX_WHERE_CONDITIONS,
    MAX_WHERE_DEPTH,
    MAX_WHERE_LIST,
    surrogate_problem,
    where_problem,
)


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("must not be empty or whitespace only")
    if (problem := surrogate_problem(value)) is not None:
        raise ValueError(problem)
    return value


def _valid_where(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Chroma's own grammar, checked here: a bad filter is the client's 422, never Chroma's error.
    if value and (problem := where_problem(value)) is not None:
        raise ValueError(problem)
    return value or None


WHERE_DESCRIPTION = (
    "Optional metadata filter, Chroma's grammar: `{field: value}`, `{field: {op: operand}}` with op "
    "$eq, $ne (string, number or boolean), $gt, $gte, $lt, $lte (number), $in, $nin (list of 1 to "
    f'{MAX_WHERE_LIST} values of one type), or `{{"$and" | "$or": [filter, filter, ...]}}`. '
    f"Each object has exactly one key; at most {MAX_WHERE_DEPTH} levels of $and/$or and "
    f"{MAX_WHERE_CONDITIONS} conditions; numbers within int64 and finite. An invalid filter is a 422."
)


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
        default="hybrid",
        description="hybrid (default): the dense candidates re-ranked by fusing the dense ranking with "
        "BM25 over those candidates (RRF); better results on every collection we measured, for a "
        "little more time (docs/benchmarks.md). dense: nearest documents by the towers' cosine distance.",
    )
    where: Annotated[dict[str, Any] | None, AfterValidator(_valid_where)] = Field(
        default=None,
        description=WHERE_DESCRIPTION,
        examples=[{"source": "faq"}, {"$and": [{"source": "faq"}, {"year": {"$gte": 2020}}]}],
        json_schema_extra={"maxProperties": 1},
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
    distance: float = Field(
        description="Cosine distance between the query and the document's best passage (0 = same direction)"
    )
    score: float = Field(
        description="What the results are ordered by, higher first: in dense mode 1 - distance (cosine "
        "similarity); in hybrid mode the reciprocal-rank-fusion score of the dense and BM25 ranks"
    )


class SearchResponse(BaseModel):
    query: str = Field(description="The query as searched (surrounding whitespace removed)")
    model_version: str = Field(description="Model version whose query tower embedded the query")
    mode: Literal["dense", "hybrid"] = Field(description="How the results were ranked")
    took_ms: float = Field(description="Time to embed the query and search, in milliseconds")
    results: list[SearchHit] = Field(description="At most k documents, each once, best first")
    search_id: str | None = Field(
        default=None,
        description="Names this search in `POST /feedback` (opaque and signed; it carries what was "
        "shown, so the service keeps nothing per search); null when feedback is off",
    )


# A search id carries the query, the shown ids and a signature: bounded by MAX_QUERY_CHARS and MAX_K ids.
MAX_SEARCH_ID_CHARS = 60_000
DocIds = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]],
    Field(max_length=MAX_K),
]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"search_id": "eJyrVkrOz0nNz...", "clicked": ["doc-7"]}]},
    )

    search_id: str = Field(
        min_length=1, max_length=MAX_SEARCH_ID_CHARS, description="`search_id` of a `/search` answer"
    )
    clicked: DocIds = Field(default=[], description="Results the user opened (ids that search returned)")
    relevant: DocIds = Field(default=[], description="Results the user judged relevant")
    not_relevant: DocIds = Field(default=[], description="Results the user judged not relevant")

    @model_validator(mode="after")
    def names_an_id(self) -> FeedbackRequest:
        if not (self.clicked or self.relevant or self.not_relevant):
            raise ValueError("name at least one id in clicked, relevant or not_relevant")
        return self


class FeedbackResponse(BaseModel):
    id: str = Field(description="The stored event's id (the same request sent again stores it once)")
    stored: int = Field(description="Document ids the event names (clicked, relevant, not relevant)")
