"""`python -m bench.peer --txtai-python PATH`: this project against txtai's API, side by side.

The same model (all-MiniLM-L6-v2, as packaged), SciFact abstracts and claims and HTTP client; both
servers up at once, taking turns slice by slice (as `make bench` does) so background load weighs on
both alike. Ours: `make run`'s processes as compose runs them, default settings, the untrained base
model with its ONNX export; hybrid ranking at 1 and N clients, dense (as txtai ranks) at 1. txtai:
its API as its documentation starts it (one uvicorn process, `writable: true`, `content: true`: texts
stored and returned, as ours are). A batch of documents is one request to ours (`POST /documents`)
and two to txtai (`POST /add`, then `GET /index` or `GET /upsert`); docs/s counts until the answer.

txtai needs its own environment (it pins other versions of torch's neighbours than ours):

    python3.11 -m venv /tmp/txv && /tmp/txv/bin/pip install torch==2.13.0 "txtai[api]==9.14.0"
    python -m bench.peer --txtai-python /tmp/txv/bin/python
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.load import concurrent_clients, percentiles, rotations
from bench.stack import ROOT, Process, _process, _wait, free_port, running_stack
from bench.workload import DEFAULT_CORPUS, load_workload
from twotower.config import PACKAGED_BASE_MODEL, resolve_base_model
from twotower.engine.cpu import CpuFeatures

log = logging.getLogger("bench.peer")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--txtai-python", required=True, help="the python of an environment with txtai[api]")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="BEIR folder (documents and queries)")
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--queries", type=int, default=200, help="at concurrency 1 (twice as many at 8)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "peer.json")
    return p.parse_args()


@contextmanager
def running_txtai(python: str, model: str, work: Path) -> Iterator[Process]:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yml"
    # YAML is JSON.
    config.write_text(json.dumps({"writable": True, "embeddings": {"path": model, "content": True}}))
    port = free_port()
    env = {**os.environ, "CONFIG": str(config), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = [python, "-m", "uvicorn", "txtai.api:app", "--host", "127.0.0.1", "--port", str(port)]
    with _process("txtai", argv, env, f"http://127.0.0.1:{port}", work / "txtai.log") as process:
        _wait(process, "/count")
        yield process


class System:
    """One server under test: how it ingests a batch and answers one search."""

    def __init__(self, name: str, ingest_url: str, search_url: str) -> None:
        self.name, self.ingest_url, self.search_url = name, ingest_url, search_url
        self.ingest_seconds, self.ingested, self.errors = 0.0, 0, 0

    def ingest(self, http: httpx.Client, docs: list[dict[str, Any]]) -> None:
        """Sends one batch, timed until the server answered; a refused batch counts as an error."""
        started = time.perf_counter()
        stored = self.store(http, docs)
        self.ingest_seconds += time.perf_counter() - started
        self.ingested += len(docs)
        self.errors += not stored

    def store(self, http: httpx.Client, docs: list[dict[str, Any]]) -> bool:
        raise NotImplementedError

    def search(self, http: httpx.Client, query: str, k: int, mode: str | None) -> bool:
        raise NotImplementedError


class Ours(System):
    def store(self, http: httpx.Client, docs: list[dict[str, Any]]) -> bool:
        return http.post(f"{self.ingest_url}/documents", json={"documents": docs}).status_code == 200

    def search(self, http: httpx.Client, query: str, k: int, mode: str | None) -> bool:
        body: dict[str, Any] = {"query": query, "k": k} | ({"mode": mode} if mode else {})
        response = http.post(f"{self.search_url}/search", json=body)
        return response.status_code == 200 and len(response.json()["results"]) == k


class Txtai(System):
    indexed = False

    def store(self, http: httpx.Client, docs: list[dict[str, Any]]) -> bool:
        added = http.post(f"{self.ingest_url}/add", json=[{"id": d["id"], "text": d["text"]} for d in docs])
        built = http.get(f"{self.ingest_url}/{'upsert' if self.indexed else 'index'}")
        self.indexed = True
        return added.status_code == 200 and built.status_code == 200

    def search(self, http: httpx.Client, query: str, k: int, mode: str | None) -> bool:
        response = http.get(f"{self.search_url}/search", params={"query": query, "limit": k})
        return response.status_code == 200 and len(response.json()) == k


class Searches:
    """`concurrency` clients, each with its own connection, sending back to back."""

    def __init__(self, system: System, concurrency: int, k: int, mode: str | None = None) -> None:
        self.system, self.concurrency, self.k, self.mode = system, concurrency, k, mode
        self.latencies: list[float] = []
        self.seconds = 0.0
        self.errors = 0

    def run(self, queries: list[str]) -> None:
        def connect() -> httpx.Client:
            http = httpx.Client(timeout=60)
            self.system.search(http, queries[0], self.k, self.mode)
            return http

        def send(http: httpx.Client, query: str) -> float | None:
            return math.nan if self.system.search(http, query, self.k, self.mode) else None

        latencies, _, errors, seconds = concurrent_clients(self.concurrency, queries, connect, send)
        self.latencies += latencies
        self.errors += errors
        self.seconds += seconds

    def summary(self) -> dict[str, Any]:
        return {
            **percentiles(self.latencies),
            "queries_per_s": round(len(self.latencies) / self.seconds, 2) if self.seconds else 0.0,
            "errors": self.errors,
        }


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S")
    from twotower.engine.export import publish_base

    work = load_workload(args.corpus, args.docs, 2 * args.queries)
    model = resolve_base_model(PACKAGED_BASE_MODEL)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp, ExitStack() as running:
        scratch = Path(tmp)
        version = publish_base(scratch / "weights")
        stack = running.enter_context(running_stack("onnx", scratch / "weights", scratch / "ours"))
        txtai = running.enter_context(running_txtai(args.txtai_python, model, scratch / "txtai"))
        systems: list[System] = [
            Ours("this project", stack.ingest.url, stack.query.url),
            Txtai("txtai", txtai.url, txtai.url),
        ]
        load = os.getloadavg()
        batches = [
            work.documents[i : i + args.batch_size] for i in range(0, len(work.documents), args.batch_size)
        ]
        clients = {s.name: httpx.Client(timeout=600) for s in systems}
        for r, order in rotations(systems, len(batches)):
            for s in order:
                s.ingest(clients[s.name], batches[r])
        for c in clients.values():
            c.close()
        log.info("ingest docs/s: %s", {s.name: round(s.ingested / s.ingest_seconds, 2) for s in systems})
        queries = work.queries[: args.queries]
        for s in systems:  # warm-up, not kept: first searches load what they load lazily
            Searches(s, 1, args.k).run(queries[:10])
        # Each slice: both systems in the default mode, and ours in dense, taking turns.
        c1 = [Searches(s, 1, args.k) for s in systems] + [Searches(systems[0], 1, args.k, mode="dense")]
        for r, turns in rotations(c1, len(queries) // 20):
            for searches in turns:
                searches.run(queries[r * 20 : (r + 1) * 20])
        slice_n = 10 * args.concurrency
        cn = {s.name: Searches(s, args.concurrency, args.k) for s in systems}
        for r, order in rotations(systems, len(work.queries) // slice_n):
            for s in order:
                cn[s.name].run(work.queries[r * slice_n : (r + 1) * slice_n])
        results: dict[str, dict[str, Any]] = {
            s.name: {
                "ingest_docs_per_s": round(s.ingested / s.ingest_seconds, 2),
                "ingest_errors": s.errors,
                "c1": c1[i].summary(),
                f"c{args.concurrency}": cn[s.name].summary(),
            }
            for i, s in enumerate(systems)
        }
        results["this project"]["c1_dense"] = c1[2].summary()
        end_load = os.getloadavg()
    ours, peer = results["this project"], results["txtai"]
    conc = f"c{args.concurrency}"
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": CpuFeatures.read().summary(),  # the engines' choice depends on it
        "model_version": version,
        "model": model,
        "documents": len(work.documents),
        "queries": len(queries),
        "load_average_start": [round(x, 2) for x in load],
        "load_average_end": [round(x, 2) for x in end_load],
        "duration_s": round(time.monotonic() - started, 1),
        "results": results,
        "ratios": {
            "ingest_docs_per_s": round(ours["ingest_docs_per_s"] / peer["ingest_docs_per_s"], 2),
            "c1_p50_speedup": round(peer["c1"]["p50_ms"] / ours["c1"]["p50_ms"], 2),
            "c1_p99_speedup": round(peer["c1"]["p99_ms"] / ours["c1"]["p99_ms"], 2),
            f"{conc}_throughput": round(ours[conc]["queries_per_s"] / peer[conc]["queries_per_s"], 2),
            f"{conc}_p99_speedup": round(peer[conc]["p99_ms"] / ours[conc]["p99_ms"], 2),
            "c1_p50_ms_hybrid_over_dense": round(ours["c1"]["p50_ms"] - ours["c1_dense"]["p50_ms"], 2),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s: ratios %s", args.out, report["ratios"])
    log.info("%s", json.dumps(results, indent=2))
    return 0 if not any(np.isnan(r["c1"]["p50_ms"]) for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
