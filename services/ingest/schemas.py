"""Request and response bodies of the ingestion API: the bounds here are the contract in /docs."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from twotower.index.store import MetadataValue
from twotower.limits import (
    MAX_DOCUMENTS_CEILING,
    MAX_ID_CHARS,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    RESERVED_METADATA_PREFIXES,
)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace only")
    return value


_JSON_KINDS = {dict: "an object", list: "an array", type(None): "null"}


def _flat_metadata(value: object) -> object:
    # Runs before the type check, so a nested value gets one clear message instead of one error
    # per member of the scalar union.
    if not isinstance(value, dict):
        return value  # the dict type check reports it
    for key, item in value.items():
        if item is None or not isinstance(item, str | int | float | bool):
            kind = _JSON_KINDS.get(type(item), type(item).__name__)
            raise ValueError(f"metadata values must be a string, number or boolean; {key!r} is {kind}")
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise ValueError(f"metadata keys must have 1 to {MAX_METADATA_KEY_CHARS} characters, got {key!r}")
        if key.startswith(RESERVED_METADATA_PREFIXES):
            reserved = " or ".join(repr(p) for p in RESERVED_METADATA_PREFIXES)
            raise ValueError(f"metadata key {key!r} is reserved: keys may not start with {reserved}")
    return value


DocumentId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_CHARS, description="Your id; posting it again replaces it"),
    AfterValidator(_not_blank),
]
# Scalars only: Chroma stores flat metadata, and JSON NaN/Infinity would not round-trip.
MetadataScalar = (
    Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
    | bool
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
)
Metadata = Annotated[
    dict[str, MetadataScalar],
    Field(
        max_length=MAX_METADATA_KEYS,
        description="Flat key → str/int/float/bool; keys may not start with '_' or 'chroma:'. "
        "Usable in the query service's `where` filter.",
        examples=[{"source": "handbook", "year": 2024, "public": True}],
    ),
    BeforeValidator(_flat_metadata),
]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DocumentId
    text: Annotated[
        str,
        Field(max_length=MAX_TEXT_CHARS, description="The body; embedded (with the title) and stored"),
        AfterValidator(_not_blank),
    ]
    title: str | None = Field(
        default=None, max_length=MAX_TITLE_CHARS, description="Optional title, embedded too"
    )
    metadata: Metadata = Field(default_factory=dict)


class IngestRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "documents": [
                        {
                            "id": "faq-1",
                            "title": "Returns",
                            "text": "Items can be returned within 30 days of delivery.",
                            "metadata": {"source": "faq"},
                        }
                    ]
                }
            ]
        },
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
            shown = ", ".join(repr(i) for i in duplicates[:10])
            raise ValueError(f"document ids must be unique within a request; duplicated: {shown}")
        return documents


class IngestResponse(BaseModel):
    upserted: int = Field(description="Documents stored (confirmed by Chroma)", examples=[1])
    model_version: str = Field(description="Model version whose document tower embedded them")
    collection: str = Field(description="Chroma collection they are stored in")


class DocumentOut(BaseModel):
    id: str
    text: str
    title: str | None
    metadata: dict[str, MetadataValue]


class DeleteResponse(BaseModel):
    deleted: str = Field(description="Id of the deleted document")
    collection: str


class StatsResponse(BaseModel):
    count: int = Field(description="Documents in this model version's collection (0 before any ingest)")
    collection: str
    model_version: str
