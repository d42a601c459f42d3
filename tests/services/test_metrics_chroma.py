"""Time spent in Chroma, per operation, on both services (ChromaStore reports each call to the
observer the services install; see services/common/metrics.py)."""

from __future__ import annotations

from tests.services.conftest import Api, post_docs
from tests.services.test_metrics import delta, scrape


def test_chroma_calls_are_timed_per_operation(ingest_api: Api, query_api: Api) -> None:
    ingest_before, query_before = scrape(ingest_api), scrape(query_api)
    assert post_docs(ingest_api, {"id": "chroma-timed", "text": "a document about timing"}).status_code == 200
    assert ingest_api.http.delete("/documents/chroma-timed").status_code == 200
    assert query_api.http.post("/search", json={"query": "timing", "k": 2}).status_code == 200
    ingest_after, query_after = scrape(ingest_api), scrape(query_api)

    name = "twotower_chroma_seconds_count"
    operations = {labels["operation"] for labels, _ in ingest_after[name] if labels["service"] == "ingest"}
    assert len(operations) >= 2, operations  # storing and deleting are different operations
    # At least one call each to store and to delete; none failed.
    assert delta(ingest_before, ingest_after, name, service="ingest", outcome="ok") >= 2
    assert delta(ingest_before, ingest_after, name, service="ingest", outcome="error") == 0
    assert delta(ingest_before, ingest_after, "twotower_chroma_seconds_sum", service="ingest") > 0
    assert delta(query_before, query_after, name, service="query", outcome="ok") >= 1
    assert delta(query_before, query_after, name, service="query", outcome="error") == 0
