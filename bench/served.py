"""Measured through the running services' HTTP APIs, one request at a time."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from bench.workload import Workload


def percentiles(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p95_ms": round(float(np.percentile(values, 95)), 2),
        "mean_ms": round(float(values.mean()), 2),
    }


def bench_ingest(url: str, work: Workload, batch_size: int, api_key: str | None) -> dict[str, Any]:
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
        started = time.perf_counter()
        for start in tqdm(range(0, len(work.documents), batch_size), desc="ingest", unit="batch"):
            response = http.post("/documents", json={"documents": work.documents[start : start + batch_size]})
            response.raise_for_status()
        elapsed = time.perf_counter() - started
        return {
            "documents": len(work.documents),
            "batch_size": batch_size,
            "seconds": round(elapsed, 2),
            "docs_per_s": round(len(work.documents) / elapsed, 2),
        }


def remove_documents(url: str, work: Workload, api_key: str | None) -> None:
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for doc in tqdm(work.documents, desc="cleanup", unit="doc", leave=False):
            http.delete(f"/documents/{doc['id']}")


def bench_search(url: str, work: Workload, k: int, warmup: int = 5) -> dict[str, Any]:
    wall: list[float] = []
    server: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for query in work.queries[:warmup]:
            http.post("/search", json={"query": query, "k": k}).raise_for_status()
        started = time.perf_counter()
        for query in tqdm(work.queries, desc="search", unit="query"):
            t0 = time.perf_counter()
            response = http.post("/search", json={"query": query, "k": k})
            wall.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
            server.append(response.json()["took_ms"])
        elapsed = time.perf_counter() - started
    return {
        "queries": len(work.queries),
        "k": k,
        "client": percentiles(wall),
        "server_took": percentiles(server),
        "queries_per_s": round(len(work.queries) / elapsed, 2),
    }
