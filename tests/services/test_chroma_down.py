"""Chroma stopped: both services answer 503 with a reason and acknowledge nothing; once Chroma is
back they recover on their own, without a restart."""

from __future__ import annotations

from tests.conftest import ChromaServer
from tests.services.conftest import Api, post_docs

DOC = {"id": "down-1", "title": "Outage", "text": "This document was posted while the index was down."}


def assert_unavailable(response: object, *, says: str = "unavailable") -> None:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == 503, response.text
    detail = response.json()["detail"]
    assert says in detail, detail
    # The reason goes to the log; the answer names no internal address.
    assert "127.0.0.1" not in response.text and "http://" not in response.text, response.text
    assert response.headers["retry-after"]


def test_chroma_down_is_503_and_nothing_is_acknowledged(
    chroma_server: ChromaServer, ingest_api: Api, query_api: Api
) -> None:
    # Something indexed, so the query service is ready before the outage.
    assert post_docs(ingest_api, {"id": "down-0", "text": "Indexed before the outage."}).status_code == 200
    count = ingest_api.http.get("/stats").json()["count"]
    assert query_api.http.get("/readyz").status_code == 200

    with chroma_server.stopped():
        assert_unavailable(post_docs(ingest_api, DOC))
        assert_unavailable(ingest_api.http.get("/stats"))
        assert_unavailable(ingest_api.http.get("/documents/down-0"))
        assert_unavailable(ingest_api.http.delete("/documents/down-0"))
        assert_unavailable(query_api.http.post("/search", json={"query": "outage"}))
        for api in (ingest_api, query_api):
            ready = api.http.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["ready"] is False and body["detail"].startswith("chroma: Chroma is unreachable")
            assert "127.0.0.1" not in ready.text
            # The process itself is fine.
            assert api.http.get("/healthz").status_code == 200

    # Back up, same service processes: nothing from the outage was stored, and everything works.
    assert ingest_api.http.get("/stats").json()["count"] == count
    assert ingest_api.http.get("/documents/down-1").status_code == 404
    assert ingest_api.http.get("/documents/down-0").status_code == 200
    assert ingest_api.http.get("/readyz").status_code == 200
    assert query_api.http.get("/readyz").status_code == 200
    assert post_docs(ingest_api, DOC).status_code == 200
    hits = query_api.http.post("/search", json={"query": "posted while the index was down", "k": 1}).json()
    assert hits["results"][0]["id"] == "down-1"
