"""bench.load's client driver, used by `make bench` and `make bench-peer`: every query is sent once,
by as many clients as asked, each on its own connection, with errors and server times counted."""

from __future__ import annotations

import threading

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from bench.lean import LeanApp
from bench.load import ClientKind, PlainClient, Searches, concurrent_clients, rotations
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
    latencies, server, errors, seconds = concurrent_clients(3, queries, connect, send)
    sent = [q for q, _ in seen if q != "warm-up"]
    assert sorted(sent) == sorted(queries)
    assert len({ident for _, ident in seen}) == 3 and len(opened) == 3
    assert all(http.is_closed for http in opened)
    assert len(latencies) == 11 and errors == 1 and server == [2.5] * 10 and seconds > 0


def test_rotations_start_one_further_each_round() -> None:
    assert list(rotations(["a", "b", "c"], 4)) == [
        (0, ["a", "b", "c"]),
        (1, ["b", "c", "a"]),
        (2, ["c", "a", "b"]),
        (3, ["a", "b", "c"]),
    ]


@pytest.mark.parametrize("client", ["httpx", "stdlib"])
def test_both_clients_send_the_same_searches_and_count_refusals(client: ClientKind) -> None:
    """The bench's two HTTP clients must measure the same exchange: same bodies, the server's own
    time kept from each answer, a refused search (422) counted as an error, not as a latency of
    a search."""
    seen: list[SearchRequest] = []

    def search(request: SearchRequest) -> SearchResponse:
        seen.append(request)
        return SearchResponse(
            query=request.query, model_version="v1", mode=request.mode, took_ms=1.5, results=[]
        )

    with LiveServer(LeanApp(search, inline=False)) as server:
        searches = Searches(2, 3, client=client)
        searches.run(server.url, ["alpha", "beta", "   ", "gamma"])
        searches.run(server.url, ["delta"])
    assert sorted(r.query for r in seen) == ["alpha", "beta", "delta", "gamma"]
    assert {(r.k, r.mode) for r in seen} == {(3, "dense")}
    summary = searches.summary()
    assert summary["http_client"] == client
    assert summary["queries"] == 5 and summary["errors"] == 1
    assert searches.server == [1.5] * 4 and summary["queries_per_s"] > 0


def test_the_plain_client_reuses_its_connection_and_reconnects_when_closed() -> None:
    peers: list[tuple[str, int]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        peers.append(scope["client"])
        body = orjson.dumps({"path": scope["path"]})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    with LiveServer(app) as server:
        http = PlainClient(server.url, timeout=5)
        assert http.request("GET", "/a") == (200, b'{"path":"/a"}')
        assert http.request("POST", "/b", {"x": 1})[0] == 200
        http.close()
        assert http.request("GET", "/c")[0] == 200
        http.close()
    assert peers[0] == peers[1] != peers[2]
    with pytest.raises(ValueError):
        PlainClient("https://example.org", timeout=5)
