"""The work one ingestion request may cause is bounded before it starts (413 naming the limit and
what to do), a client that disconnects stops the work not yet done (what was stored is whole), and
the smaller edges: /stats while Chroma is stalled, HEAD /healthz, the title's bound in characters,
JSON sent with the wrong content type, and what /stats counts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.ingest import indexer
from tests.conftest import ChromaServer
from tests.services.conftest import Api, errors, ingest_service, post_docs
from twotower.limits import INGEST_MAX_REQUEST_CHARS, MAX_TEXT_CHARS


@pytest.fixture(scope="module")
def service(chroma_server: ChromaServer, base_weights: Path) -> Iterator[Api]:
    """Ingestion with its default bounds, on a collection of its own."""
    with ingest_service(chroma_server, base_weights, "bounds") as api:
        yield api


def doc(i: int, chars: int, prefix: str = "b") -> dict[str, str]:
    words = " ".join(f"word{i}x{j}" for j in range(chars // 8))
    return {"id": f"{prefix}-{i}", "title": "T", "text": words[: chars - 1]}


def counts(api: Api) -> tuple[int, int]:
    stats = api.http.get("/stats").json()
    return stats["count"], stats["passages"]


def test_a_request_over_the_character_bound_is_413_before_any_work(service: Api) -> None:
    before = counts(service)
    n = INGEST_MAX_REQUEST_CHARS // MAX_TEXT_CHARS + 1
    response = post_docs(service, *[doc(i, MAX_TEXT_CHARS, "big") for i in range(n)], timeout=10)
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert (
        f"at most {INGEST_MAX_REQUEST_CHARS:,} characters" in detail and "INGEST_MAX_REQUEST_CHARS" in detail
    )
    assert "smaller requests" in detail
    assert counts(service) == before


def test_a_client_that_goes_away_stops_the_work_left(service: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexer, "GROUP_CHARS", 1)  # one document per group: a look between each
    docs = [doc(i, 2_000, "gone") for i in range(60)]
    before, _ = counts(service)
    with pytest.raises(httpx.ReadTimeout):
        service.http.post("/documents", json={"documents": docs}, timeout=1.5)
    # Wait until the service is idle (the count stops moving).
    count, last = -1, counts(service)[0]
    deadline = time.monotonic() + 60
    while count != last and time.monotonic() < deadline:
        time.sleep(2)
        count, last = last, counts(service)[0]
    stored = count - before
    assert 0 < stored < len(docs), stored  # some stored, the rest never started
    # What was stored is whole: each stored document reads back as it was sent.
    for d in docs[:stored]:
        got = service.http.get(f"/documents/{d['id']}").json()
        assert (got["text"], got["title"]) == (d["text"], d["title"])


def test_stats_answers_503_soon_while_chroma_is_stalled(ingest_api: Api, chroma_server: ChromaServer) -> None:
    assert chroma_server.proc is not None
    ingest_api.http.get("/stats")  # the collection and its metadata are known
    os.kill(chroma_server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = ingest_api.http.get("/stats")
        took = time.monotonic() - started
    finally:
        os.kill(chroma_server.proc.pid, signal.SIGCONT)
    assert response.status_code == 503 and response.headers["retry-after"], response.text
    assert "did not answer within" in response.json()["detail"]
    assert took < 5, took
    time.sleep(0.5)
    assert ingest_api.http.get("/stats").status_code == 200


def test_head_healthz_on_both_services(ingest_api: Api, query_api: Api) -> None:
    for api in (ingest_api, query_api):
        response = api.http.head("/healthz")
        assert response.status_code == 200 and response.content == b""


def test_a_title_too_long_is_reported_in_characters(ingest_api: Api) -> None:
    response = post_docs(ingest_api, {"id": "t-1", "title": "t" * 1001, "text": "body"})
    assert response.status_code == 422
    [(where, msg)] = errors(response)
    assert where == "body.documents.0.title" and "1000 characters" in msg, msg


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_with_another_content_type_is_415_naming_it(
    ingest_api: Api, query_api: Api, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    for api, path, body in (
        (ingest_api, "/documents", b'{"documents": [{"id": "ct", "text": "x"}]}'),
        (query_api, "/search", b'{"query": "x"}'),
    ):
        response = api.http.post(path, content=body, headers=headers)
        assert response.status_code == 415, response.text
        assert "application/json" in response.json()["detail"]
        assert repr(content_type or "") in response.json()["detail"]


def test_stats_counts_documents_and_every_passage(service: Api) -> None:
    count, passages = counts(service)
    assert post_docs(service, doc(1, 200, "c"), doc(2, 200, "c")).status_code == 200
    assert counts(service) == (count + 2, passages + 2)  # a short document is one passage
    assert post_docs(service, doc(3, 20_000, "c")).status_code == 200
    after = counts(service)
    assert after[0] == count + 3 and after[1] > passages + 2 + 4
