"""Ingestion settings, from `INGEST_*` environment variables (see the README's settings table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from twotower.index.passages import PassageConfig

if TYPE_CHECKING:
    from twotower.index.store import HnswSettings
from twotower.limits import INGEST_MAX_BODY_BYTES, INGEST_MAX_REQUEST_CHARS, MAX_DOCUMENTS_CEILING


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_")

    port: int = Field(default=8001, ge=1, le=65535, description="Port gunicorn binds")
    max_documents_per_request: int = Field(default=1000, ge=1, le=MAX_DOCUMENTS_CEILING)
    max_request_chars: int = Field(
        default=INGEST_MAX_REQUEST_CHARS,
        ge=1,
        description="Characters of text and titles one POST /documents may carry (the work it causes); "
        "more is a 413",
    )
    max_body_bytes: int = Field(
        default=INGEST_MAX_BODY_BYTES, ge=1024, description="Largest request body; larger is a 413"
    )
    max_pending: int = Field(
        default=8,
        ge=1,
        description="POST /documents requests one worker admits at once (running or waiting); "
        "past it, 503 with Retry-After",
    )
    passage_tokens: int = Field(
        default=200,
        ge=32,
        description="Documents longer than the model's window are split into passages of this many tokens",
    )
    passage_overlap: int = Field(default=48, ge=0, description="Tokens consecutive passages share")
    finalize_wait_s: float = Field(
        default=20.0,
        gt=0,
        description="Longest a write waits while a rollout finishes (its last, brief step); past it, 503",
    )
    api_key: SecretStr | None = Field(
        default=None, description="When set, POST and DELETE need it in the X-API-Key header (401 otherwise)"
    )
    # HNSW parameters of the collections this service creates; unset = HnswSettings' defaults
    # (chosen by `make bench-scale`). An existing collection keeps those it was made with.
    hnsw_ef_search: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="HNSW candidates kept per search (recall against latency); `python -m ops.hnsw` "
        "changes it on an existing collection",
    )
    hnsw_ef_construction: int | None = Field(
        default=None, ge=1, le=10_000, description="HNSW candidates kept while inserting"
    )
    hnsw_max_neighbors: int | None = Field(default=None, ge=2, le=512, description="HNSW links per node (M)")

    @field_validator("hnsw_ef_search", "hnsw_ef_construction", "hnsw_max_neighbors", mode="before")
    @classmethod
    def _empty_hnsw_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def passage_config(settings: Settings) -> PassageConfig:
    """How long documents are split (a new collection records it; later writers follow the record)."""
    return PassageConfig(settings.passage_tokens, settings.passage_overlap)


def hnsw_settings(settings: Settings) -> HnswSettings:
    """The HNSW parameters of the collections ingestion creates (a rollout's target: ops.rollout's)."""
    # Imported here: gunicorn's master reads these settings and needs no chromadb.
    from twotower.index.store import HnswSettings

    given = {
        "ef_search": settings.hnsw_ef_search,
        "ef_construction": settings.hnsw_ef_construction,
        "max_neighbors": settings.hnsw_max_neighbors,
    }
    return HnswSettings(**{k: v for k, v in given.items() if v is not None})
