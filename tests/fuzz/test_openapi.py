"""Schemathesis against both services' own OpenAPI schemas, over real HTTP, with the real model and
a real Chroma server (the ingestion key sent): no 5xx, and every answer — status, content type,
headers and body — is one the schema documents. Bounded: FUZZ_EXAMPLES cases per operation
(positive and negative), derandomized so that a failure reproduces."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.ingest.config import Settings as IngestSettings
from services.ingest.main import create_app as create_ingest_app
from services.query.config import Settings as QuerySettings
from services.query.main import create_app as create_query_app
from tests.conftest import ChromaServer, LiveServer

# Schemathesis over real HTTP: `make test-stack`.
pytestmark = pytest.mark.fuzz

KEY = "fuzz-key"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure reproduces
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def services(chroma_server: ChromaServer, published_base: Path) -> Iterator[dict[str, str]]:
    common: dict[str, Any] = {
        "chroma_host": chroma_server.host,
        "chroma_port": chroma_server.port,
        "collection_prefix": "fuzz",
        "weights_dir": published_base,
    }
    ingest = create_ingest_app(IngestSettings(**common, api_key=KEY, max_documents_per_request=20))
    query = create_query_app(QuerySettings(**common))
    with LiveServer(ingest) as ingest_server, LiveServer(query) as query_server:
        yield {"ingest": ingest_server.url, "query": query_server.url}


# The schemas the apps publish at /openapi.json (building an app loads no model: that happens when
# it is served, in the `services` fixture).
ingest = schemathesis.openapi.from_dict(create_ingest_app(IngestSettings(api_key=KEY)).openapi())
query = schemathesis.openapi.from_dict(create_query_app(QuerySettings()).openapi())


# (method, path) -> status codes seen, to check below that the fuzzing reached past validation.
SEEN: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)


@ingest.parametrize()
@FUZZ
def test_ingest_api(case: Any, services: dict[str, str]) -> None:
    response = case.call_and_validate(
        base_url=services["ingest"], headers={"X-API-Key": KEY}, checks=CHECKS, timeout=60
    )
    SEEN[case.method.upper(), case.path][response.status_code] += 1


@query.parametrize()
@FUZZ
def test_query_api(case: Any, services: dict[str, str]) -> None:
    response = case.call_and_validate(base_url=services["query"], checks=CHECKS, timeout=60)
    SEEN[case.method.upper(), case.path][response.status_code] += 1


def test_the_fuzzing_reached_the_work_and_the_refusals() -> None:
    # Generated cases that are stored and searched, and others refused as the client's mistakes.
    for operation in [("POST", "/documents"), ("POST", "/search")]:
        assert SEEN[operation][200] > 0 and SEEN[operation][422] > 0, (operation, SEEN[operation])
