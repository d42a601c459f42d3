"""Honest writes: when Chroma fails part-way through a POST, the 503 names the documents that were
stored, the loader's client resumes with the others only, and nothing acknowledged goes missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ChromaServer
from tests.services.conftest import Api, ingest_service, post_docs
from twotower.client import IngestClient
from twotower.index.store import ChromaStore, StoreUnavailable


@pytest.fixture(scope="module")
def ingest(chroma_server: ChromaServer, base_weights: Path) -> Iterator[Api]:
    with ingest_service(chroma_server, base_weights, "partial") as api:
        yield api


@pytest.fixture
def third_upsert_fails(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Chroma accepts two chunks of 2 records, then fails (once)."""
    real = ChromaStore._with_handle
    calls: list[str] = []

    def flaky(self: ChromaStore, name: str, what: str, op: Any) -> Any:
        if what == "upsert" and name != "-serving":
            calls.append(name)
            if len(calls) == 3:
                raise StoreUnavailable("Chroma is unreachable (upsert): simulated")
        return real(self, name, what, op)

    monkeypatch.setattr(ChromaStore, "_with_handle", flaky)
    monkeypatch.setattr(ChromaStore, "max_batch_size", lambda self: 2)
    return calls


DOCS = [{"id": f"p{i}", "text": f"Document number {i} about partial writes."} for i in range(6)]


def test_a_503_part_way_names_what_was_stored(ingest: Api, third_upsert_fails: list[str]) -> None:
    response = post_docs(ingest, *DOCS)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    body = response.json()
    assert body["stored"] == ["p0", "p1", "p2", "p3"]
    assert "stored" in body["detail"] and "127.0.0.1" not in response.text
    for doc_id in body["stored"]:
        assert ingest.http.get(f"/documents/{doc_id}").status_code == 200
    assert ingest.http.get("/documents/p5").status_code == 404


def test_the_loader_resumes_with_what_was_not_stored(ingest: Api, third_upsert_fails: list[str]) -> None:
    docs = [{**d, "id": f"r{i}"} for i, d in enumerate(DOCS)]
    with IngestClient(ingest.url, backoff_s=0.01) as client:
        answer = client.post_documents(docs)
    assert answer["upserted"] == 6
    # 3 chunks of 2, the third failed; the retry sent the last 2 documents only: 1 chunk.
    assert len(third_upsert_fails) == 4
    for doc in docs:
        assert ingest.http.get(f"/documents/{doc['id']}").json()["text"] == doc["text"]
