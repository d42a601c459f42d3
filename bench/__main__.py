"""`python -m bench`: ingestion throughput and /search latency against a running stack, plus the
towers' in-process encoding throughput. Prints a table and writes JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

from bench.inprocess import bench_model
from bench.served import bench_ingest, bench_search, remove_documents
from bench.workload import load_workload

log = logging.getLogger("bench")
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--query-url", default="http://localhost:8000")
    p.add_argument("--ingest-url", default="http://localhost:8001")
    p.add_argument(
        "--corpus",
        default=str(DEFAULT_CORPUS) if DEFAULT_CORPUS.is_dir() else None,
        help="BEIR folder or .jsonl (default ../shared/data/scifact if present, else pydoc topics)",
    )
    p.add_argument("--docs", type=int, default=256, help="documents to ingest and encode")
    p.add_argument("--queries", type=int, default=200, help="queries to search and encode")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--api-key", default=os.environ.get("INGEST_API_KEY") or None)
    p.add_argument("--weights-dir", type=Path, default=Path("weights"), help="for the in-process model")
    p.add_argument("--skip-served", action="store_true", help="only the in-process encoding benchmark")
    p.add_argument("--skip-model", action="store_true", help="only the benchmarks through HTTP")
    p.add_argument("--keep", action="store_true", help="keep the benchmark's documents in the index")
    p.add_argument(
        "--out", type=Path, default=Path("runs/bench.json"), help="JSON results (runs/ is git-ignored)"
    )
    return p.parse_args()


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    if "ingest" in results:
        i = results["ingest"]
        rows.append(
            (
                "ingest via HTTP",
                f"{i['docs_per_s']} docs/s ({i['documents']} docs, batches of {i['batch_size']})",
            )
        )
    if "search" in results:
        s = results["search"]
        c, t = s["client"], s["server_took"]
        rows.append(
            (
                "/search latency (client)",
                f"p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms ({s['queries']} queries, k={s['k']})",
            )
        )
        rows.append(("/search took_ms (server)", f"p50 {t['p50_ms']} ms, p95 {t['p95_ms']} ms"))
        rows.append(("/search sequential", f"{s['queries_per_s']} queries/s"))
    if "model" in results:
        m = results["model"]
        rows.append(
            (
                "encode_documents",
                f"{m['encode_documents_per_s']} docs/s (batch {m['batch_size']}, {m['device']})",
            )
        )
        rows.append(
            (
                "encode_queries",
                f"{m['encode_queries_per_s']} queries/s batched, {m['encode_one_query_ms']} ms one at a time",
            )
        )
        rows.append(("model load", f"{m['load_s']} s (version {m['model_version']})"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args()
    work = load_workload(args.corpus, args.docs, args.queries)
    results: dict[str, Any] = {
        "workload": {"corpus": work.name, "documents": len(work.documents), "queries": len(work.queries)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    if not args.skip_served:
        results["ingest"] = bench_ingest(args.ingest_url, work, args.batch_size, args.api_key)
        try:
            results["search"] = bench_search(args.query_url, work, args.k)
        finally:
            if not args.keep:
                remove_documents(args.ingest_url, work, args.api_key)
    if not args.skip_model:
        results["model"] = bench_model(work, args.weights_dir, args.batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("%s\nwrote %s", table(results), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
