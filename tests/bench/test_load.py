"""bench.load's client driver, used by `make bench` and `make bench-peer`: every query is sent once,
by as many clients as asked, each on its own connection, with errors and server times counted; and
the one percentile helper every benchmark reports with."""

from __future__ import annotations

import math
import threading

import httpx
import numpy as np
from fastapi import FastAPI

from bench.load import Searches, concurrent_clients, in_turns, percentiles, rotations
from services.query.schemas import SearchRequest, SearchResponse
from tests.conftest import LiveServer


def test_every_query_is_sent_once_by_its_own_clients() -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["q"]
        with lock:
            seen.append((query, threading.get_ident()))
        if query == "bad":
            return httpx.Response(500)
        return httpx.Response(200, json={"took_ms": 2.5})

    opened: list[httpx.Client] = []

    def connect() -> httpx.Client:
        http = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://test")
        http.get("/", params={"q": "warm-up"})
        opened.append(http)
        return http

    def send(http: httpx.Client, query: str) -> float | None:
        response = http.get("/", params={"q": query})
        return float(response.json()["took_ms"]) if response.status_code == 200 else None

    queries = [f"q{i}" for i in range(10)] + ["bad"]
    latencies, server, errors, _ = concurrent_clients(3, queries, connect, send)
    sent = [q for q, _ in seen if q != "warm-up"]
    assert sorted(sent) == sorted(queries)
    assert len({ident for _, ident in seen}) == 3 and len(opened) == 3
    assert all(http.is_closed for http in opened)
    assert len(latencies) == 11 and errors == 1 and server == [2.5] * 10


def test_rotations_start_one_further_each_round() -> None:
    assert list(rotations(["a", "b", "c"], 4)) == [
        (0, ["a", "b", "c"]),
        (1, ["b", "c", "a"]),
        (2, ["c", "a", "b"]),
        (3, ["a", "b", "c"]),
    ]


def test_in_turns_gives_every_name_every_slice_with_the_first_rotating() -> None:
    runs: list[tuple[str, list[int]]] = []
    in_turns(["a", "b"], [1, 2, 3, 4, 5], 2, lambda n, part: runs.append((n, part)))
    assert runs == [("a", [1, 2]), ("b", [1, 2]), ("b", [3, 4]), ("a", [3, 4]), ("a", [5]), ("b", [5])]


def test_searches_send_the_request_and_count_refusals_as_errors() -> None:
    """Same body for every search, the server's own time kept from each answer, a refused search
    (422) counted as an error, not as a latency of a search."""
    seen: list[SearchRequest] = []
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.post("/search")
    def search(request: SearchRequest) -> SearchResponse:
        seen.append(request)
        return SearchResponse(
            query=request.query, model_version="v1", mode=request.mode, took_ms=1.5, results=[]
        )

    with LiveServer(app) as server:
        searches = Searches(2, 3)
        searches.run(server.url, ["alpha", "beta", "   ", "gamma"])
        searches.run(server.url, ["delta"])
    assert sorted(r.query for r in seen) == ["alpha", "beta", "delta", "gamma"]
    assert {(r.k, r.mode) for r in seen} == {(3, "dense")}
    summary = searches.summary()
    assert summary["queries"] == 5 and summary["errors"] == 1
    assert searches.server == [1.5] * 4


def test_percentiles_agree_with_numpy_and_show_an_empty_run_as_nan() -> None:
    ms = [float(x) for x in np.random.default_rng(0).exponential(10.0, 1000)]
    stats = percentiles(ms)
    for q in (50, 95, 99):
        assert stats[f"p{q}_ms"] == round(float(np.percentile(ms, q)), 2)
    assert stats["max_ms"] == round(max(ms), 2) and stats["p50_ms"] < stats["p99_ms"] <= stats["max_ms"]
    assert all(math.isnan(v) for v in percentiles([]).values())
