"""Settings both services share. Each service subclasses this with its own env prefix
(`QUERY_`, `INGEST_`) in its `config.py`; nothing else in the services reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twotower.config import PACKAGED_BASE_MODEL

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    chroma_host: str = Field(default="localhost", description="Host of the Chroma server")
    chroma_port: int = Field(default=8002, ge=1, le=65535, description="Port of the Chroma server")
    collection_prefix: str = Field(
        default="docs", description="Collections are named <prefix>-<model version>"
    )
    weights_dir: Path = Field(default=Path("weights"), description="Root of published model versions")
    models_dir: Path | None = Field(
        default=None,
        description="Model versions baked into the image (the untrained base model), looked up after weights_dir",
    )
    model_version: str | None = Field(
        default=None,
        description="The version to serve when the index has no serving pointer yet (first start); "
        "default LATEST, else the base model. Afterwards `make rollout` decides",
    )
    base_model: str = Field(
        default=PACKAGED_BASE_MODEL, description="Backbone served when nothing is published"
    )
    engine: Literal["torch", "onnx"] = Field(
        default="onnx", description="How the towers run: onnx (ONNX Runtime) or torch (PyTorch)"
    )
    onnx_variant: Literal["auto", "fp32", "int8"] = Field(
        default="auto",
        description="onnx engine: fp32 graphs, or int8 ones (exported with every version; faster, "
        "less exact); auto = chosen for the CPU and tower (twotower.engine.cpu)",
    )
    onnx_backend: Literal["auto", "onnxruntime", "openvino"] = Field(
        default="auto",
        description="onnx engine: the runtime of the fp32 graphs on CPU, onnxruntime or openvino "
        "(bfloat16 where the CPU has it); int8 graphs and a GPU always run on onnxruntime; auto = "
        "chosen for the CPU and tower (twotower.engine.cpu)",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="Intra-op threads per worker for the towers; unset = CPUs / workers",
    )
    device: str | None = Field(
        default=None, description="torch device; default cuda when available, else cpu"
    )
    host: str = Field(default="0.0.0.0", description="Address gunicorn binds")
    port: int = Field(default=8000, ge=1, le=65535, description="Port gunicorn binds")
    workers: int = Field(default=1, ge=1, description="gunicorn worker processes (each loads the model)")
    log_level: LogLevel = "info"
    log_format: Literal["plain", "json"] = Field(
        default="plain", description="Log lines as plain text (control characters escaped) or JSON objects"
    )
    chroma_timeout_s: float = Field(
        default=15.0, gt=0, description="Longest wait for one answer from Chroma; past it, 503"
    )
    chroma_connect_timeout_s: float = Field(
        default=2.0, gt=0, description="Longest wait to connect to Chroma"
    )
    pointer_poll_s: float = Field(
        default=1.0, gt=0, description="How often each worker looks at the serving pointer (model rollouts)"
    )
    max_pending: int = Field(
        default=64,
        ge=1,
        description="Requests one worker admits to the model at once (running or waiting); "
        "past it, 503 with Retry-After",
    )

    def model_roots(self) -> list[Path]:
        """Where model versions are looked up, in order."""
        return [self.weights_dir] + ([self.models_dir] if self.models_dir else [])

    def encoder_threads(self) -> int:
        """workers x threads ~= the CPUs this process may use: more threads than cores only
        makes the workers' thread pools fight over them."""
        if self.threads is not None:
            return self.threads
        # Imported here: gunicorn's master reads these settings and needs no numpy or tokenizers.
        from twotower.engine import available_cpus

        return max(1, available_cpus() // self.workers)

    # `api_key`: the ingestion service's.
    @field_validator(
        "model_version", "device", "models_dir", "threads", "api_key", mode="before", check_fields=False
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `VAR=` in an env file or compose means "not set", not an empty version, device name or key.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
