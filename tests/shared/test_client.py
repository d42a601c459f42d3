"""The loader client's retry policy (twotower.client): what is sent again, how often, after which
pauses, and what is never sent again."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from twotower.client import IngestClient, LoaderError


def client_answering(
    answers: list[Callable[[httpx.Request], httpx.Response]], **options: float
) -> tuple[IngestClient, list[float], list[httpx.Request]]:
    pauses: list[float] = []
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers[min(len(sent), len(answers)) - 1](request)

    client = IngestClient("http://ingest.test", sleep=pauses.append, **options)  # type: ignore[arg-type]
    client.http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(handler))
    return client, pauses, sent


def status(code: int, body: object = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(code, json=body if body is not None else {"detail": f"status {code}"})


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def test_transport_errors_and_5xx_are_retried_with_capped_exponential_backoff() -> None:
    answers = [refuse_connection, status(503), status(500), status(502), status(200, {"count": 3})]
    client, pauses, sent = client_answering(answers, retries=5, backoff_s=0.5, max_backoff_s=3.0)
    assert client.stats() == {"count": 3}
    assert len(sent) == 5
    assert pauses == [0.5, 1.0, 2.0, 3.0]


def test_giving_up_after_every_attempt_names_the_last_failure() -> None:
    client, pauses, sent = client_answering([status(503)], retries=2, backoff_s=0.1)
    with pytest.raises(LoaderError, match=r"failed after 3 attempts: HTTP 503: status 503"):
        client.stats()
    assert len(sent) == 3 and pauses == [0.1, 0.2]


def test_a_4xx_is_never_sent_again() -> None:
    client, pauses, sent = client_answering([status(422), status(200, {})], retries=5)
    with pytest.raises(LoaderError, match="was refused: HTTP 422"):
        client.stats()
    assert len(sent) == 1 and pauses == []


def test_a_partly_stored_batch_is_resumed_with_the_rest_only() -> None:
    docs = [{"id": f"d{i}", "text": "t"} for i in range(4)]
    answers = [status(503, {"detail": "chroma failed", "stored": ["d0", "d1"]}), status(200, {"upserted": 2})]
    client, _, sent = client_answering(answers, retries=3)
    assert client.post_documents(docs)["upserted"] == 4
    assert [d["id"] for d in httpx.Response(200, content=sent[1].content).json()["documents"]] == ["d2", "d3"]
