"""Query settings, from `QUERY_*` environment variables (see the README's settings table)."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.common.settings import ServiceSettings
from twotower.limits import QUERY_MAX_BODY_BYTES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUERY_")

    port: int = Field(default=8000, ge=1, le=65535, description="Port gunicorn binds")
    max_body_bytes: int = Field(
        default=QUERY_MAX_BODY_BYTES, ge=1024, description="Largest request body; larger is a 413"
    )
    # Unset: on for torch, off for onnx, whichever served more queries/s (docs/benchmarks.md).
    micro_batch: bool | None = Field(
        default=None,
        description="Encode concurrent queries together, as one batch (services/query/batching.py); "
        "unset = for the torch engine only. Never for an encoder that runs one text per pass (int8)",
    )
    micro_batch_max: int = Field(default=32, ge=1, le=256, description="Most queries in one micro-batch")
    hybrid_depth: int = Field(
        default=100,
        ge=10,
        le=1000,
        description="Dense candidates that hybrid mode re-ranks with BM25 (and at least k)",
    )
    # -- search feedback (services/query/feedback.py, README "Search feedback") ----------------
    feedback: bool = Field(default=True, description="Sign search ids and accept POST /feedback")
    feedback_store_queries: bool = Field(
        default=True, description="Keep the query text with stored feedback (off: an empty string)"
    )
    feedback_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of search ids; unset = a key made once and kept in Chroma, shared by "
        "every replica and worker",
    )
    feedback_max_age_s: int = Field(
        default=86_400, ge=1, description="Feedback on a search older than this is refused (410)"
    )
    feedback_retention_days: float = Field(
        default=90, gt=0, description="Stored feedback older than this is deleted"
    )
    feedback_max_records: int = Field(
        default=1_000_000,
        ge=1,
        description="Stored feedback events at most; past it, 503 until retention frees room",
    )
    feedback_rate_per_s: float = Field(
        default=5, gt=0, description="POST /feedback per second one worker accepts (burst 2x); past it, 429"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=["*"],
        description='Origins allowed to call the API from a browser: "*", a comma-separated list, or JSON',
    )

    @field_validator("feedback_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # QUERY_CORS_ORIGINS="https://a.example,https://b.example" or '["https://a.example"]'.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value
