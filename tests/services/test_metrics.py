"""GET /metrics on both services after real requests, read with prometheus_client's own parser.

The services of a test session share one process (and so one registry): every check compares a
scrape after the requests with a scrape before them.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.common.metrics import set_model_version
from tests.services.conftest import Api, post_docs

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(api: Api) -> Samples:
    """Every sample of one scrape, by name: [(labels, value), ...]."""
    response = api.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for got, v in samples.get(name, []) if labels.items() <= got.items())


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def test_ingest_metrics_count_requests_documents_and_embeddings(ingest_api: Api) -> None:
    before = scrape(ingest_api)
    docs = [{"id": f"metrics-{i}", "text": f"metrics document number {i}"} for i in range(3)]
    assert post_docs(ingest_api, *docs).status_code == 200
    assert ingest_api.http.get("/documents/metrics-0").status_code == 200
    assert ingest_api.http.get("/documents/metrics-none").status_code == 404
    assert ingest_api.http.delete("/documents/metrics-1").status_code == 200
    after = scrape(ingest_api)

    service = {"service": "ingest"}
    assert delta(before, after, "twotower_documents_ingested_total", **service) == 3
    assert delta(before, after, "twotower_documents_deleted_total", **service) == 1

    # Per route template and status: the document id is not a label.
    requests = "twotower_http_requests_total"
    get_doc = {**service, "method": "GET", "route": "/documents/{doc_id:path}"}
    assert delta(before, after, requests, **service, method="POST", route="/documents", status="200") == 1
    assert delta(before, after, requests, **get_doc, status="200") == 1
    assert delta(before, after, requests, **get_doc, status="404") == 1
    assert not any("metrics-0" in labels["route"] for labels, _ in after[requests])
    latency = "twotower_http_request_duration_seconds"
    assert delta(before, after, f"{latency}_count", **get_doc, status="404") == 1
    assert delta(before, after, f"{latency}_bucket", **get_doc, status="404", le="+Inf") == 1
    assert delta(before, after, f"{latency}_sum", **get_doc) > 0

    # The document tower embedded the three texts.
    document_tower = {**service, "tower": "document"}
    assert delta(before, after, "twotower_embedding_seconds_count", **document_tower) >= 1
    assert delta(before, after, "twotower_embedding_seconds_sum", **document_tower) > 0
    assert delta(before, after, "twotower_embedded_texts_total", **document_tower) == 3

    version = ingest_api.http.get("/").json()["model_version"]
    assert total(after, "twotower_model_info", **service, version=version) == 1


def test_query_metrics_count_searches_by_status(query_api: Api, ingest_api: Api) -> None:
    assert (
        post_docs(ingest_api, {"id": "metrics-q", "text": "the speed of light in vacuum"}).status_code == 200
    )
    before = scrape(query_api)
    found = query_api.http.post("/search", json={"query": "how fast is light", "k": 3})
    assert found.status_code == 200
    assert query_api.http.post("/search", json={"query": "light", "k": 0}).status_code == 422
    assert query_api.http.get("/no/such/page").status_code == 404
    after = scrape(query_api)

    requests = "twotower_http_requests_total"
    search = {"service": "query", "method": "POST", "route": "/search"}
    assert delta(before, after, requests, **search, status="200") == 1
    assert delta(before, after, requests, **search, status="422") == 1
    # Unknown paths share one label: a scanner cannot create a series per path.
    assert delta(before, after, requests, service="query", route="unmatched", status="404") == 1
    assert not any("/no/such" in labels["route"] for labels, _ in after[requests])

    # Only the valid search embedded a query.
    query_tower = {"service": "query", "tower": "query"}
    assert delta(before, after, "twotower_embedding_seconds_count", **query_tower) == 1
    assert delta(before, after, "twotower_embedded_texts_total", **query_tower) == 1

    served = found.json()["model_version"]
    assert total(after, "twotower_model_info", service="query", version=served) == 1


@pytest.mark.parametrize("swaps", [["v1", "v2"], ["v1", "v2", "v1"]])
def test_model_version_follows_swaps(swaps: list[str]) -> None:
    service = f"swap-test-{len(swaps)}"
    for version in swaps:
        set_model_version(service, version, "onnx")

    def info(version: str) -> float | None:
        labels = {"service": service, "version": version, "engine": "onnx"}
        return REGISTRY.get_sample_value("twotower_model_info", labels)

    assert info(swaps[-1]) == 1
    assert all(info(v) == 0 for v in set(swaps) - {swaps[-1]})
