"""Load through the services' HTTP APIs: ingestion batches and /search at a concurrency, measured
in slices so that several stacks can take turns (see bench/__main__.py), then summed up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
import numpy as np

T = TypeVar("T")


class Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50, p95, p99, mean and max of latencies in ms, to 0.01 ms; all NaN for none (a visible gap)."""
    keys = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")
    if not ms:
        return dict.fromkeys(keys, float("nan"))
    values = [*np.percentile(ms, [50, 95, 99]), np.mean(ms), max(ms)]
    return {key: round(float(v), 2) for key, v in zip(keys, values, strict=True)}


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
    """Round r visits every item, starting one further along each round: load weighs on all alike."""
    for r in range(rounds):
        shift = r % len(items)
        yield r, items[shift:] + items[:shift]


def in_turns(names: list[str], items: list[T], size: int, run: Callable[[str, list[T]], None]) -> None:
    """`items` in slices of `size`, each slice run by every name in turn (`rotations`)."""
    for r, order in rotations(names, -(-len(items) // size)):
        for n in order:
            run(n, items[r * size : (r + 1) * size])


def concurrent_clients(
    concurrency: int,
    queries: list[str],
    connect: Callable[[], C],
    send: Callable[[C, str], float | None],
) -> tuple[list[float], list[float], int, float]:
    """`concurrency` threads, client i sending every concurrency-th query back to back. `connect` opens
    a connection and makes one untimed request; `send` returns the server's time (NaN: none), or None
    for an error. Returns client latencies (ms), server times, errors, and seconds to the last answer."""
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
    """/search from `concurrency` clients sending back to back: client latency, the server's `took_ms`
    and throughput, summed over slices. A refused search counts as an error, not as a latency."""

    concurrency: int
    k: int
    mode: str = "dense"  # the engines are compared on the towers' own ranking
    latencies: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def run(self, url: str, queries: list[str]) -> None:
        def connect() -> httpx.Client:
            http = httpx.Client(base_url=url, timeout=60)
            http.get("/healthz")
            return http

        def send(http: httpx.Client, query: str) -> float | None:
            response = http.post("/search", json={"query": query, "k": self.k, "mode": self.mode})
            return float(response.json()["took_ms"]) if response.status_code == 200 else None

        latencies, server, errors, seconds = concurrent_clients(self.concurrency, queries, connect, send)
        self.latencies += latencies
        self.server += server
        self.errors += errors
        self.seconds += seconds

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "http_client": "httpx",
            "queries": len(self.latencies),
            "k": self.k,
            "mode": self.mode,
            "client": percentiles(self.latencies),
            "server_took": percentiles(self.server),
            "queries_per_s": round(len(self.latencies) / self.seconds, 2) if self.seconds else 0.0,
            "errors": self.errors,
        }
