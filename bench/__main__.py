"""`python -m bench` (`make bench`): the serving speed of both engines, measured in one run.

Each configuration (`CONFIGS`) gets its own Chroma server and the two services under gunicorn on
free ports. Taking turns slice by slice (so that other load on the machine weighs on all alike),
they measure ingestion through `POST /documents`, `/search` at concurrency 1 and 8, the in-process
floor (encode one query + one Chroma query), and each process's peak memory. Writes JSON and its
own section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx

from bench.floor import Backend, Floor, Variant, floor_threads
from bench.load import Ingestion, Searches, in_turns
from bench.report import ratios, update_doc
from bench.stack import Stack, running_stack, served_weights
from bench.workload import DEFAULT_CORPUS, Workload, load_workload
from twotower.engine import Engine

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parents[1]

# The query service's onnx defaults, set on every stack so the floor runs the tower it runs.
QUERY_ONNX_DEFAULTS = {"QUERY_ONNX_VARIANT": "int8", "QUERY_ONNX_BACKEND": "onnxruntime"}
# name -> (engine, extra service settings); "onnx" is the services' defaults (int8 graphs).
CONFIGS: dict[str, tuple[Engine, dict[str, str]]] = {
    "torch": ("torch", {}),
    "onnx": ("onnx", {}),
    # The default but for the documents' runtime: ONNX Runtime instead of OpenVINO.
    "onnx documents on onnxruntime": ("onnx", {"INGEST_ONNX_BACKEND": "onnxruntime"}),
    "onnx fp32": ("onnx", {"QUERY_ONNX_VARIANT": "fp32", "INGEST_ONNX_VARIANT": "fp32"}),
    # Micro-batching is off for onnx by default (on for torch); this measures it for fp32.
    "onnx fp32 micro-batching": (
        "onnx",
        {"QUERY_ONNX_VARIANT": "fp32", "INGEST_ONNX_VARIANT": "fp32", "QUERY_MICRO_BATCH": "true"},
    ),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="BEIR folder (documents and queries)")
    p.add_argument(
        "--weights-dir", type=Path, default=ROOT / "weights", help="its LATEST, else a temporary base model"
    )
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    p.add_argument("--docs", type=int, default=256, help="documents to ingest")
    p.add_argument("--queries", type=int, default=200, help="queries at concurrency 1 (twice as many at 8)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64, help="documents per POST")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--query-workers", type=int, default=2, help="as in docker-compose.yml")
    p.add_argument("--ingest-workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench.json")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md", help="section rewritten here")
    p.add_argument("--no-doc", action="store_true", help="only the JSON")
    return p.parse_args()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(
    args: argparse.Namespace, stacks: dict[str, Stack], weights: Path, version: str, work: Workload
) -> dict[str, Any]:
    """Every configuration takes turns, slice by slice, through each phase (`in_turns`)."""
    names = list(stacks)
    queries = work.queries[: args.queries]
    concurrent = work.queries
    ingestion = {n: Ingestion(args.batch_size) for n in names}
    c1 = {n: Searches(1, args.k) for n in names}
    hybrid = {n: Searches(1, args.k, mode="hybrid") for n in names}
    cn = {n: Searches(args.concurrency, args.k) for n in names}
    clients = {n: httpx.Client(base_url=stacks[n].ingest.url, timeout=600) for n in names}
    try:
        for n in names:  # not timed: collection creation, first forward pass
            clients[n].post("/documents", json={"documents": work.documents[:8]}).raise_for_status()
        in_turns(names, work.documents, args.batch_size, lambda n, docs: ingestion[n].post(clients[n], docs))
        log.info("ingest: %s", {n: ingestion[n].summary()["docs_per_s"] for n in names})
    finally:
        for client in clients.values():
            client.close()
    for n in names:
        answer = httpx.post(f"{stacks[n].query.url}/search", json={"query": queries[0], "k": 1}, timeout=60)
        answer.raise_for_status()
        if (served := answer.json()["model_version"]) != version:
            raise RuntimeError(f"{n}: the query service serves {served}, not {version}")
        Searches(1, args.k).run(stacks[n].query.url, queries[:10])  # warm-up, not kept
    slice_1, slice_n = 20, 10 * args.concurrency
    threads = floor_threads(args.query_workers)
    floors = {}
    for n in names:
        engine, extra = CONFIGS[n]
        settings = {**QUERY_ONNX_DEFAULTS, **extra}
        variant = cast(Variant, settings["QUERY_ONNX_VARIANT"])
        backend = cast(Backend, settings["QUERY_ONNX_BACKEND"])
        stack = stacks[n]
        floors[n] = Floor(
            engine, weights, version, stack.chroma_port, stack.prefix, args.k, threads, variant, backend
        )
        floors[n].run(queries[:10], record=False)
    # CPU seconds the query service and Chroma spend on the c=1 searches (bounds throughput).
    cpu = {n: [0.0, 0.0] for n in names}
    try:
        # Each slice through HTTP, then at once in-process: their ratio compares like with like.
        def search_and_floor(n: str, part: list[str]) -> None:
            before = stacks[n].query.cpu_seconds(), stacks[n].chroma.cpu_seconds()
            c1[n].run(stacks[n].query.url, part)
            cpu[n][0] += stacks[n].query.cpu_seconds() - before[0]
            cpu[n][1] += stacks[n].chroma.cpu_seconds() - before[1]
            floors[n].run(part)

        in_turns(names, queries, slice_1, search_and_floor)
    finally:
        for f in floors.values():
            f.close()
    log.info("search c=1 p50: %s", {n: c1[n].summary()["client"]["p50_ms"] for n in names})
    # What hybrid ranking (BM25 over the candidates, fused) adds to a search, engine by engine.
    in_turns(names, queries, slice_1, lambda n, part: hybrid[n].run(stacks[n].query.url, part))
    log.info("hybrid search c=1 p50: %s", {n: hybrid[n].summary()["client"]["p50_ms"] for n in names})
    in_turns(names, concurrent, slice_n, lambda n, part: cn[n].run(stacks[n].query.url, part))
    log.info("search c=%d q/s: %s", args.concurrency, {n: cn[n].summary()["queries_per_s"] for n in names})

    results: dict[str, Any] = {}
    for n in names:
        engine, extra = CONFIGS[n]
        floor = floors[n].summary()
        search = {
            "c1": c1[n].summary(),
            "c1_hybrid": hybrid[n].summary(),
            f"c{args.concurrency}": cn[n].summary(),
        }
        results[n] = {
            "engine": engine,
            "settings": extra,
            "ingest": ingestion[n].summary(),
            "search": search,
            "floor": floor,
            "http_p50_over_floor": round(search["c1"]["client"]["p50_ms"] / floor["total"]["p50_ms"], 2),
            "cpu_ms_per_search": {
                "query_service": round(cpu[n][0] * 1000 / len(c1[n].latencies), 2),
                "chroma": round(cpu[n][1] * 1000 / len(c1[n].latencies), 2),
            },
            "peak_rss_mb": {
                p.name: p.peak_rss_mb() for p in (stacks[n].query, stacks[n].ingest, stacks[n].chroma)
            },
        }
        log.info(
            "%s: floor p50 %s ms, HTTP p50 / floor %s",
            n,
            floor["total"]["p50_ms"],
            results[n]["http_p50_over_floor"],
        )
    return results


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    begun = time.perf_counter()
    work = load_workload(args.corpus, args.docs, args.queries * 2)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "workload": {
            "corpus": work.name,
            "documents": len(work.documents),
            "queries": args.queries,
            "queries_concurrent": len(work.queries),
            "k": args.k,
            "batch_size": args.batch_size,
        },
        "services": {"query_workers": args.query_workers, "ingest_workers": args.ingest_workers},
        "load_average_start": load_average(),
        "configs": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        scratch = Path(tmp)
        weights, version = served_weights(args.weights_dir, scratch)
        results["model_version"] = version
        with ExitStack() as running:
            stacks = {}
            for name in names:
                engine, extra = CONFIGS[name]
                log.info("== %s: starting Chroma, ingest and query", name)
                stacks[name] = running.enter_context(
                    running_stack(
                        engine,
                        weights,
                        scratch / name.replace(" ", "-"),
                        query_workers=args.query_workers,
                        ingest_workers=args.ingest_workers,
                        extra={**QUERY_ONNX_DEFAULTS, **extra},
                    )
                )
            results["configs"] = measure(args, stacks, weights, version, work)
    results["load_average_end"] = load_average()
    results["ratios"] = ratios(results["configs"])
    results["duration_s"] = round(time.perf_counter() - begun, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_doc:
        update_doc(args.doc, results, args.out)
    log.info(
        "wrote %s%s in %.0f s", args.out, "" if args.no_doc else f" and {args.doc}", results["duration_s"]
    )
    for line in results["ratios"]["lines"]:
        log.info(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
