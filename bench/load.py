"""Load through the services' HTTP APIs: ingestion batches and /search at a concurrency, measured
in slices so that several stacks can take turns (see bench/__main__.py), then summed up."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, get_args
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson

T = TypeVar("T")
ClientKind = Literal["httpx", "stdlib"]
CLIENTS: dict[str, ClientKind] = {kind: kind for kind in get_args(ClientKind)}  # by name


class Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


class PlainClient:
    """One keep-alive HTTP/1.1 connection through the standard library's `http.client` (TCP_NODELAY
    set on connect), JSON by orjson. Against the same server its search p50 was 0.7-1.6 ms under
    httpx's on the 2-core machine (docs/benchmarks.md, "The client's share"), so that `bench.lean`
    can tell how much of an HTTP latency is the client's own work rather than the server's."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"PlainClient speaks plain http to a host: {url!r}")
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def request(self, method: str, path: str, payload: Any = None) -> tuple[int, bytes]:
        """The answer's status and body. A connection the server closed is reopened by http.client
        on the next request."""
        body = None if payload is None else orjson.dumps(payload)
        headers = {} if body is None else {"Content-Type": "application/json"}
        self._conn.request(method, path, body=body, headers=headers)
        response = self._conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._conn.close()


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {
            "p50_ms": float("nan"),
            "p95_ms": float("nan"),
            "p99_ms": float("nan"),
            "mean_ms": float("nan"),
        }
    values = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p95_ms": round(float(np.percentile(values, 95)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "mean_ms": round(float(values.mean()), 2),
    }


@dataclass
class Ingestion:
    """Documents posted one batch per request, one request at a time."""

    batch_size: int
    documents: int = 0
    seconds: float = 0.0
    errors: int = 0

    def post(self, http: httpx.Client, documents: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        response = http.post("/documents", json={"documents": documents})
        self.seconds += time.perf_counter() - started
        self.documents += len(documents)
        self.errors += response.status_code != 200

    def summary(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "batch_size": self.batch_size,
            "seconds": round(self.seconds, 2),
            "docs_per_s": round(self.documents / self.seconds, 2) if self.seconds else 0.0,
            "errors": self.errors,
        }


def rotations(items: list[T], rounds: int) -> Iterator[tuple[int, list[T]]]:
    """Round r visits every item (a configuration, a system under test), starting one further along
    each round: several stacks take turns, so background load weighs on all of them alike."""
    for r in range(rounds):
        shift = r % len(items)
        yield r, items[shift:] + items[:shift]


def concurrent_clients(
    concurrency: int,
    queries: list[str],
    connect: Callable[[], C],
    send: Callable[[C, str], float | None],
) -> tuple[list[float], list[float], int, float]:
    """`concurrency` clients (threads), client i sending every concurrency-th query back to back on
    its own connection. `connect` opens that connection and makes one untimed request, so the
    clock starts with every client connected; `send` makes one request and returns the server's own
    time for it (NaN when it reports none), or None for an error. Returns the client-side latencies
    (ms), the server times, the errors, and the seconds from the start until the last answer."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    server: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = threading.Barrier(concurrency + 1)

    def client(i: int) -> None:
        http = connect()  # used already: it cannot be entered as a context manager
        try:
            start.wait(timeout=60)
            for query in queries[i::concurrency]:
                t0 = time.perf_counter()
                took = send(http, query)
                latencies[i].append((time.perf_counter() - t0) * 1000)
                if took is None:
                    errors[i] += 1
                else:
                    server[i].append(took)
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    start.wait(timeout=60)
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    seconds = time.perf_counter() - started
    return [x for c in latencies for x in c], [x for c in server for x in c], sum(errors), seconds


@dataclass
class Searches:
    """/search from `concurrency` clients (threads, each with its own connection) sending back to
    back; latency per request as the client sees it, throughput over the time the slices took.
    `client`: httpx (what `make bench` and the peer comparison use), or `PlainClient`."""

    concurrency: int
    k: int
    mode: str = "dense"  # the engines are compared on the towers' own ranking
    client: ClientKind = "httpx"
    latencies: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def run(self, url: str, queries: list[str]) -> None:
        if self.client == "stdlib":
            latencies, server, errors, seconds = self._run_plain(url, queries)
        else:
            latencies, server, errors, seconds = self._run_httpx(url, queries)
        self.latencies += latencies
        self.server += server
        self.errors += errors
        self.seconds += seconds

    def _body(self, query: str) -> dict[str, Any]:
        return {"query": query, "k": self.k, "mode": self.mode}

    def _run_httpx(self, url: str, queries: list[str]) -> tuple[list[float], list[float], int, float]:
        def connect() -> httpx.Client:
            http = httpx.Client(base_url=url, timeout=60)
            http.get("/healthz")
            return http

        def send(http: httpx.Client, query: str) -> float | None:
            response = http.post("/search", json=self._body(query))
            return float(response.json()["took_ms"]) if response.status_code == 200 else None

        return concurrent_clients(self.concurrency, queries, connect, send)

    def _run_plain(self, url: str, queries: list[str]) -> tuple[list[float], list[float], int, float]:
        def connect() -> PlainClient:
            http = PlainClient(url, timeout=60)
            http.request("GET", "/healthz")
            return http

        def send(http: PlainClient, query: str) -> float | None:
            status, body = http.request("POST", "/search", self._body(query))
            return float(orjson.loads(body)["took_ms"]) if status == 200 else None

        return concurrent_clients(self.concurrency, queries, connect, send)

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "http_client": self.client,
            "queries": len(self.latencies),
            "k": self.k,
            "mode": self.mode,
            "client": percentiles(self.latencies),
            "server_took": percentiles(self.server),
            "queries_per_s": round(len(self.latencies) / self.seconds, 2) if self.seconds else 0.0,
            "errors": self.errors,
        }
