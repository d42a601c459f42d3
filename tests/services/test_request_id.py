"""X-Request-ID: echoed when the client sends a sane one, generated otherwise, on every answer
(errors included), and on every log line written while the request runs."""

from __future__ import annotations

import logging
import re

import pytest
from asgi_correlation_id import CorrelationIdFilter
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.observability import REQUEST_ID as HEADER
from services.common.observability import instrument_app
from tests.services.conftest import Api, post_docs

GENERATED = re.compile(r"[0-9a-f]{32}")


def test_a_sane_request_id_is_echoed(query_api: Api) -> None:
    for given in ["abc-123", "0af7651916cd43dd8448eb211c80319c", "trace:span/7+x=="]:
        assert query_api.http.get("/healthz", headers={HEADER: given}).headers[HEADER] == given


@pytest.mark.parametrize("given", [None, "", "has spaces", 'quote"d', "x" * 129, "é-accent"])
def test_a_missing_or_odd_request_id_is_replaced(query_api: Api, given: str | None) -> None:
    headers = {} if given is None else {HEADER: given.encode()}
    first = query_api.http.get("/healthz", headers=headers).headers[HEADER]
    second = query_api.http.get("/healthz", headers=headers).headers[HEADER]
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


def test_error_answers_carry_the_request_id(query_api: Api, ingest_api: Api) -> None:
    bad = query_api.http.post("/search", json={"query": "x", "k": 0}, headers={HEADER: "bad-k"})
    assert (bad.status_code, bad.headers[HEADER]) == (422, "bad-k")
    missing = ingest_api.http.get("/documents/never-posted", headers={HEADER: "no-doc"})
    assert (missing.status_code, missing.headers[HEADER]) == (404, "no-doc")
    assert GENERATED.fullmatch(query_api.http.get("/no/such/page").headers[HEADER])


def test_an_unhandled_error_still_answers_500_with_the_id() -> None:
    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    instrument_app(app, "test")
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={HEADER: "boom-1"})
    assert (response.status_code, response.headers[HEADER]) == (500, "boom-1")


def test_log_lines_of_a_request_carry_its_id(ingest_api: Api, caplog: pytest.LogCaptureFixture) -> None:
    # The gunicorn log config puts this filter on its handler; here it goes on pytest's.
    caplog.handler.addFilter(CorrelationIdFilter(default_value="-"))
    caplog.set_level(logging.INFO, logger="services")
    response = post_docs(ingest_api, {"id": "rid-1", "text": "request ids"}, headers={HEADER: "log-test-7"})
    assert response.status_code == 200

    tagged = [
        (r.name, r.getMessage()) for r in caplog.records if getattr(r, "correlation_id", None) == "log-test-7"
    ]
    # The handler's own line (logged in the thread pool that runs sync handlers) and the access line.
    assert any(name == "services.ingest.indexer" and "upserted" in msg for name, msg in tagged), tagged
    assert any(name == "services.access" and '"POST /documents HTTP/1.1" 200' in msg for name, msg in tagged)
    # Lines outside any request say so.
    logging.getLogger("services.test").info("between requests")
    assert caplog.records[-1].correlation_id == "-"  # type: ignore[attr-defined]
