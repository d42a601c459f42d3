"""Services started while Chroma is down (compose without `depends_on`, a Kubernetes node restart):
they start, say they are alive and not ready, and recover on their own once Chroma is up."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import ChromaServer, free_port
from tests.services.conftest import ingest_service, post_docs, query_service


def wait_ready(url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/readyz", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_services_start_before_chroma_and_recover(base_weights: Path, tmp_path: Path) -> None:
    chroma = ChromaServer(tmp_path / "chroma", free_port())  # not started yet
    with (
        ingest_service(chroma, base_weights, "late", pointer_poll_s=0.3) as ingest,
        query_service(chroma, base_weights, "late", pointer_poll_s=0.3) as query,
    ):
        for api in (ingest, query):
            assert api.http.get("/healthz").status_code == 200
            ready = api.http.get("/readyz")
            assert ready.status_code == 503 and not ready.json()["ready"]
        assert post_docs(ingest, {"id": "a", "text": "Posted while the index was down."}).status_code == 503
        chroma.start()
        try:
            assert wait_ready(ingest.url).status_code == 200
            assert post_docs(ingest, {"id": "a", "text": "Posted once the index was up."}).status_code == 200
            assert wait_ready(query.url).status_code == 200
            hits = query.http.post("/search", json={"query": "index up", "k": 1}).json()["results"]
            assert [h["id"] for h in hits] == ["a"]
        finally:
            chroma.stop()
