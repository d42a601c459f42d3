"""Fixtures for the service tests: the real apps (real packaged model: the untrained base, published
once per session with its ONNX export, served by the default engine) over real HTTP against the
session's real Chroma server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.ingest.config import Settings as IngestSettings
from services.ingest.main import create_app as create_ingest_app
from services.query.config import Settings as QuerySettings
from services.query.main import create_app as create_query_app
from tests.conftest import ChromaServer, LiveServer

# Small, so "too many documents" is cheap to provoke.
MAX_DOCS = 5


@dataclass
class Api:
    url: str
    http: httpx.Client


@contextmanager
def serve(app: Any) -> Iterator[Api]:
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        yield Api(server.url, http)


def common_settings(chroma: ChromaServer, weights: Path, prefix: str) -> dict[str, Any]:
    return {
        "chroma_host": chroma.host,
        "chroma_port": chroma.port,
        "collection_prefix": prefix,
        "weights_dir": weights,
    }


@contextmanager
def ingest_service(chroma: ChromaServer, weights: Path, prefix: str, **overrides: Any) -> Iterator[Api]:
    settings = IngestSettings(**common_settings(chroma, weights, prefix), **overrides)
    with serve(create_ingest_app(settings)) as api:
        yield api


@contextmanager
def query_service(chroma: ChromaServer, weights: Path, prefix: str, **overrides: Any) -> Iterator[Api]:
    settings = QuerySettings(**common_settings(chroma, weights, prefix), **overrides)
    with serve(create_query_app(settings)) as api:
        yield api


@pytest.fixture(scope="session")
def base_weights(published_base: Path) -> Path:
    # Only the untrained base model published (it ranks like its base model), served through the
    # default engine, as a fresh `make run` or a service image serves it.
    return published_base


@pytest.fixture(scope="session")
def ingest_api(chroma_server: ChromaServer, base_weights: Path) -> Iterator[Api]:
    """The shared ingestion service (collection prefix "svc", at most MAX_DOCS per request)."""
    with ingest_service(chroma_server, base_weights, "svc", max_documents_per_request=MAX_DOCS) as api:
        yield api


@pytest.fixture(scope="session")
def query_api(chroma_server: ChromaServer, base_weights: Path) -> Iterator[Api]:
    """The shared query service, over the same collection as `ingest_api`."""
    with query_service(chroma_server, base_weights, "svc", cors_origins=["https://app.example"]) as api:
        yield api


def post_docs(api: Api, *docs: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return api.http.post("/documents", json={"documents": list(docs)}, **kwargs)


def errors(response: httpx.Response) -> list[tuple[str, str]]:
    """A 422 body as (location, message) pairs, e.g. ("body.k", "Input should be ...")."""
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in response.json()["detail"]]
