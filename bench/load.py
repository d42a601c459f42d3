"""Load through the services' HTTP APIs: ingestion throughput and /search latency at a concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import numpy as np

from bench.workload import Workload


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


def ingest(url: str, work: Workload, batch_size: int, warmup: int = 8) -> dict[str, Any]:
    """Post the workload's documents in batches, one request at a time; docs/s over the whole run."""
    errors = 0
    with httpx.Client(base_url=url, timeout=600) as http:
        # Not timed: the first request pays for lazy set-up (collection creation, first forward pass).
        http.post("/documents", json={"documents": work.documents[:warmup]}).raise_for_status()
        started = time.perf_counter()
        for start in range(0, len(work.documents), batch_size):
            response = http.post("/documents", json={"documents": work.documents[start : start + batch_size]})
            errors += response.status_code != 200
        elapsed = time.perf_counter() - started
    return {
        "documents": len(work.documents),
        "batch_size": batch_size,
        "seconds": round(elapsed, 2),
        "docs_per_s": round(len(work.documents) / elapsed, 2),
        "errors": errors,
    }


def search(url: str, queries: list[str], k: int, concurrency: int, warmup: int = 10) -> dict[str, Any]:
    """Every query once, from `concurrency` clients (threads, each with its own connection)
    sending back to back; latency per request as the client sees it, throughput over the run."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for query in queries[:warmup]:
            http.post("/search", json={"query": query, "k": k}).raise_for_status()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    server: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = threading.Barrier(concurrency + 1)

    def client(i: int) -> None:
        mine = queries[i::concurrency]
        with httpx.Client(base_url=url, timeout=60) as http:
            http.get("/healthz")  # connect before the clock starts
            start.wait(timeout=60)
            for query in mine:
                t0 = time.perf_counter()
                response = http.post("/search", json={"query": query, "k": k})
                latencies[i].append((time.perf_counter() - t0) * 1000)
                if response.status_code == 200:
                    server[i].append(response.json()["took_ms"])
                else:
                    errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    start.wait(timeout=60)
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "queries": len(queries),
        "k": k,
        "client": percentiles([x for c in latencies for x in c]),
        "server_took": percentiles([x for c in server for x in c]),
        "queries_per_s": round(len(queries) / elapsed, 2),
        "errors": sum(errors),
    }
