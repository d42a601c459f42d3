"""Backpressure over real HTTP: with the model held busy, a worker admits `max_pending` requests
and answers the next with 503 + Retry-After at once, while /healthz and /readyz still answer fast
(they never wait behind the model, even with the request thread pool full)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.ingest.config import Settings as IngestSettings
from services.ingest.main import create_app as create_ingest_app
from services.query.config import Settings as QuerySettings
from services.query.main import create_app as create_query_app
from tests.conftest import ChromaServer, LiveServer
from tests.services.conftest import Api, common_settings, post_docs

# More than anyio's default pool of 40 threads: the probes must not need one.
PENDING = 48


@contextmanager
def held_model(server: LiveServer, method: str) -> Iterator[tuple[threading.Event, threading.Semaphore]]:
    """Make the encoder's `method` wait until the returned event is set; the semaphore counts
    the calls that are waiting."""
    encoder = server.server.lifespan.state["service"].encoder
    original: Callable[..., Any] = getattr(encoder, method)
    release, entered = threading.Event(), threading.Semaphore(0)

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.release()
        release.wait(60)
        return original(*args, **kwargs)

    setattr(encoder, method, held)
    try:
        yield release, entered
    finally:
        release.set()
        setattr(encoder, method, original)


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    assert client.get(path).status_code == 200
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def query_server(chroma_server: ChromaServer, base_weights: Path) -> Iterator[LiveServer]:
    settings = QuerySettings(**common_settings(chroma_server, base_weights, "svc"), max_pending=PENDING)
    with LiveServer(create_query_app(settings)) as server:
        yield server


def test_search_past_max_pending_is_503_at_once_and_probes_stay_fast(
    query_server: LiveServer, ingest_api: Api
) -> None:
    assert post_docs(ingest_api, {"id": "bp-q", "text": "Something to find."}).status_code == 200
    url = query_server.url
    with (
        held_model(query_server, "encode_queries") as (release, entered),
        ThreadPoolExecutor(PENDING) as pool,
    ):
        waiting = [
            pool.submit(httpx.post, f"{url}/search", json={"query": f"q{i}"}, timeout=60)
            for i in range(PENDING)
        ]
        # Every admitted request is in the handler (the pool holds 40; the rest wait for a thread).
        assert entered.acquire(timeout=30)
        gate = query_server.server.config.app.state.model_gate
        deadline = time.monotonic() + 30
        while gate.pending < PENDING:
            assert time.monotonic() < deadline, f"only {gate.pending} requests were admitted"
            time.sleep(0.05)

        started = time.perf_counter()
        refused = httpx.post(f"{url}/search", json={"query": "one too many"}, timeout=10)
        assert refused.status_code == 503 and time.perf_counter() - started < 1.0
        assert refused.headers["retry-after"] == "1"
        assert "overloaded" in refused.json()["detail"]

        with httpx.Client(base_url=url, timeout=10) as probe:
            times = sorted(timed_get(probe, "/healthz") for _ in range(11))
            # Blocked behind the model, these would wait for the release (a minute): the bound that
            # catches that is generous; the median is the liveness budget (100 ms, on a busy machine).
            assert times[-1] < 1.0 and times[5] < 0.1, times
            started = time.perf_counter()
            assert probe.get("/readyz").status_code in (200, 503)
            assert time.perf_counter() - started < 2.5  # its checks are bounded, and need no pool thread

        release.set()
        assert [f.result().status_code for f in waiting] == [200] * PENDING
    # Once the queue drained, the worker admits requests again.
    assert httpx.post(f"{url}/search", json={"query": "after"}, timeout=30).status_code == 200


def test_ingest_past_max_pending_is_503(chroma_server: ChromaServer, base_weights: Path) -> None:
    settings = IngestSettings(**common_settings(chroma_server, base_weights, "bp"), max_pending=1)
    with LiveServer(create_ingest_app(settings)) as server:
        body = {"documents": [{"id": "bp-1", "text": "Held in the model."}]}
        with ThreadPoolExecutor(1) as pool, held_model(server, "encode_documents") as (release, entered):
            first = pool.submit(httpx.post, f"{server.url}/documents", json=body, timeout=60)
            assert entered.acquire(timeout=30)
            refused = httpx.post(f"{server.url}/documents", json=body, timeout=10)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            # Reads do not run the model: not gated.
            assert httpx.get(f"{server.url}/stats", timeout=10).status_code == 200
            release.set()
            assert first.result().status_code == 200
