"""Request and response bodies of the ingestion API: the bounds here are the contract in /docs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from twotower.index.store import MetadataValue
from twotower.limits import (
    ID_CHARSET,
    INT64_MAX,
    INT64_MIN,
    MAX_DOCUMENTS_CEILING,
    MAX_ID_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_TOTAL_CHARS,
    MAX_METADATA_VALUE_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    id_problem,
    metadata_problem,
    surrogate_problem,
)

T = TypeVar("T")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace only")
    return value


def checked(problem_of: Callable[[T], str | None]) -> Callable[[T], T]:
    """A validator that raises the problem `problem_of` finds in a value, if any."""

    def check(value: T) -> T:
        if (problem := problem_of(value)) is not None:
            raise ValueError(problem)
        return value

    return check


_valid_unicode = checked(surrogate_problem)
valid_id = checked(id_problem)
# Runs before the type check, so a nested value gets one clear message instead of one error per
# member of the scalar union; not a dict: the type check reports it.
_valid_metadata = checked(lambda value: metadata_problem(value) if isinstance(value, dict) else None)


# For the OpenAPI schema (and fuzzers): the characters no id may hold; `id_problem` is the rule.
ID_PATTERN = r"^[^/\\#?%\s\x00-\x1f\x7f]+$"
ID_DESCRIPTION = (
    f"Your id, 1 to {MAX_ID_CHARS} characters: {ID_CHARSET}. It is one path segment of "
    "GET/DELETE /documents/{id}. Posting it again replaces the document."
)
DocumentId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description=ID_DESCRIPTION,
        json_schema_extra={"pattern": ID_PATTERN},
    ),
    AfterValidator(valid_id),
]
# Scalars only: Chroma stores flat metadata; integers are int64 there; NaN/Infinity would not round-trip.
MetadataScalar = (
    Annotated[str, Field(max_length=MAX_METADATA_VALUE_CHARS)]
    | bool
    | Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
    | Annotated[float, Field(allow_inf_nan=False)]
)
Metadata = Annotated[
    dict[str, MetadataScalar],
    Field(
        max_length=MAX_METADATA_KEYS,
        description=f"Flat key → str/int/float/bool, at most {MAX_METADATA_KEYS} keys of 1 to 128 "
        f"characters, string values of at most {MAX_METADATA_VALUE_CHARS:,} characters and "
        f"{MAX_METADATA_TOTAL_CHARS:,} characters in all, integers within int64, finite numbers. "
        "Keys may not start with '_', 'chroma:', '$' or '#'. Usable in the query service's `where` filter.",
        examples=[{"source": "handbook", "year": 2024, "public": True}],
    ),
    BeforeValidator(_valid_metadata),
]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DocumentId
    text: Annotated[
        str,
        Field(max_length=MAX_TEXT_CHARS, description="The body; embedded (with the title) and stored"),
        AfterValidator(_not_blank),
        AfterValidator(_valid_unicode),
    ]
    # The bound inside the str type: on the union it would be counted (and reported) as items.
    title: Annotated[str, Field(max_length=MAX_TITLE_CHARS), AfterValidator(_valid_unicode)] | None = Field(
        default=None, description=f"Optional title of at most {MAX_TITLE_CHARS:,} characters, embedded too"
    )
    metadata: Metadata = Field(default_factory=dict)

    @property
    def chars(self) -> int:
        """Characters the document tower embeds (text and title): what INGEST_MAX_REQUEST_CHARS bounds."""
        return len(self.text) + len(self.title or "")


EXAMPLE = {"id": "faq-1", "title": "Returns", "text": "Items can be returned within 30 days of delivery."}


class IngestRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"documents": [{**EXAMPLE, "metadata": {"source": "faq"}}]}]},
    )

    documents: list[DocumentIn] = Field(
        min_length=1,
        max_length=MAX_DOCUMENTS_CEILING,
        description="1 to `max_documents_per_request` (default 1,000) documents with distinct ids",
    )

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, documents: list[DocumentIn]) -> list[DocumentIn]:
        duplicates = sorted(i for i, n in Counter(d.id for d in documents).items() if n > 1)
        if duplicates:
            shown = ", ".join(repr(i[:64]) for i in duplicates[:10])
            raise ValueError(f"document ids must be unique within a request; duplicated: {shown}")
        return documents


class IngestResponse(BaseModel):
    upserted: int = Field(description="Documents stored (confirmed by Chroma)", examples=[1])
    model_version: str = Field(description="Model version whose document tower embedded them")
    collection: str = Field(description="Chroma collection they are stored in")
    also_written_to: str | None = Field(
        default=None,
        description="While a rollout migrates to another model version: that version, whose collection "
        "received the same documents (embedded by its own document tower) before this answer",
    )


class DocumentOut(BaseModel):
    id: str
    text: str
    title: str | None
    metadata: dict[str, MetadataValue]


class DeleteResponse(BaseModel):
    deleted: str = Field(description="Id of the deleted document")
    collection: str


class MigrationStatus(BaseModel):
    state: str = Field(description="migrating (dual writes + backfill) or finalizing (writes wait briefly)")
    source: str = Field(description="The version served until the migration ends")
    target: str = Field(description="The version being rolled out")
    backfilled: int = Field(description="Records (passages) of the served collection the backfill has done")
    total: int = Field(description="Records (passages) in the served collection when the backfill began")
    started: float = Field(description="When the migration began (unix time)")


class StatsResponse(BaseModel):
    count: int = Field(description="Documents in this model version's collection (0 before any ingest)")
    passages: int = Field(
        default=0,
        description="Passages the search ranks: one per short document, several per long one split "
        "into passages (so at least `count`)",
    )
    collection: str
    model_version: str
    migration: MigrationStatus | None = Field(
        default=None, description="The rollout in progress, if any (`make rollout`)"
    )
