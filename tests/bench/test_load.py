"""bench.load's client driver, used by `make bench` and `make bench-peer`: every query is sent once,
by as many clients as asked, each on its own connection, with errors and server times counted."""

from __future__ import annotations

import threading

import httpx

from bench.load import concurrent_clients, rotations


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
