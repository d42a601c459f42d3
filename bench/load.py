"""Load through the services' HTTP APIs: ingestion batches and /search at a concurrency, measured
in slices so that several stacks can take turns (see bench/__main__.py), then summed up."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np


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


@dataclass
class Searches:
    """/search from `concurrency` clients (threads, each with its own connection) sending back to
    back; latency per request as the client sees it, throughput over the time the slices took."""

    concurrency: int
    k: int
    mode: str = "dense"  # the engines are compared on the towers' own ranking
    latencies: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def run(self, url: str, queries: list[str]) -> None:
        latencies: list[list[float]] = [[] for _ in range(self.concurrency)]
        server: list[list[float]] = [[] for _ in range(self.concurrency)]
        errors = [0] * self.concurrency
        start = threading.Barrier(self.concurrency + 1)

        def client(i: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                http.get("/healthz")  # connect before the clock starts
                start.wait(timeout=60)
                for query in queries[i :: self.concurrency]:
                    t0 = time.perf_counter()
                    response = http.post("/search", json={"query": query, "k": self.k, "mode": self.mode})
                    latencies[i].append((time.perf_counter() - t0) * 1000)
                    if response.status_code == 200:
                        server[i].append(response.json()["took_ms"])
                    else:
                        errors[i] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(self.concurrency)]
        for t in threads:
            t.start()
        start.wait(timeout=60)
        started = time.perf_counter()
        for t in threads:
            t.join(timeout=600)
        self.seconds += time.perf_counter() - started
        self.latencies += [x for c in latencies for x in c]
        self.server += [x for c in server for x in c]
        self.errors += sum(errors)

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "queries": len(self.latencies),
            "k": self.k,
            "mode": self.mode,
            "client": percentiles(self.latencies),
            "server_took": percentiles(self.server),
            "queries_per_s": round(len(self.latencies) / self.seconds, 2) if self.seconds else 0.0,
            "errors": self.errors,
        }
