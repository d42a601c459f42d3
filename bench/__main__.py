"""`python -m bench` (`make bench`): the serving speed of both engines, measured in one run.

For each configuration (torch; onnx; onnx int8; onnx without micro-batching) it starts its own Chroma
server and the two services under gunicorn (as production runs them) on free ports, then measures
ingestion through `POST /documents`, `/search` at concurrency 1 and 8, each process's peak memory,
and the in-process floor (encode one query + one Chroma query). Writes JSON and its own section of
docs/benchmarks.md. Takes about 5 minutes on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from bench.floor import floor
from bench.load import ingest, search
from bench.report import ratios, update_doc
from bench.stack import running_stack
from bench.workload import load_workload
from twotower.engine import Engine
from twotower.registry import latest_version

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "scifact"

# name -> (engine, extra service settings)
CONFIGS: dict[str, tuple[Engine, dict[str, str]]] = {
    "torch": ("torch", {}),
    "onnx": ("onnx", {}),
    "onnx int8": ("onnx", {"QUERY_ONNX_VARIANT": "int8", "INGEST_ONNX_VARIANT": "int8"}),
    "onnx no micro-batching": ("onnx", {"QUERY_MICRO_BATCH": "false"}),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="BEIR folder (documents and queries)")
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=ROOT / "weights",
        help="serves its LATEST version; "
        "when it has none, the base model is published into a temporary directory",
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


def served_weights(weights_dir: Path, scratch: Path, int8: bool) -> tuple[Path, str]:
    """A weights directory whose LATEST version has its ONNX export (exported if it lacks one)."""
    from twotower.engine.export import export_published, publish_base

    version = latest_version(weights_dir)
    if version is None:
        weights_dir = scratch / "weights"
        log.info("nothing published in %s: publishing the base model into %s", weights_dir, weights_dir)
        version = publish_base(weights_dir, int8=int8)
    export_published([weights_dir], version, int8=int8)
    return weights_dir, version


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_config(
    name: str,
    engine: Engine,
    extra: dict[str, str],
    args: argparse.Namespace,
    weights: Path,
    version: str,
    work: Any,
    queries: list[str],
    scratch: Path,
) -> dict[str, Any]:
    log.info("== %s: starting Chroma, ingest and query", name)
    started = time.perf_counter()
    with running_stack(
        engine,
        weights,
        scratch / name.replace(" ", "").replace(",", "-"),
        query_workers=args.query_workers,
        ingest_workers=args.ingest_workers,
        extra=extra,
    ) as stack:
        result: dict[str, Any] = {
            "engine": engine,
            "settings": extra,
            "start_s": round(time.perf_counter() - started, 1),
        }
        result["ingest"] = ingest(stack.ingest.url, work, args.batch_size)
        log.info("   ingest: %s docs/s", result["ingest"]["docs_per_s"])
        served = httpx.post(f"{stack.query.url}/search", json={"query": queries[0], "k": 1}, timeout=60)
        served.raise_for_status()
        if served.json()["model_version"] != version:
            raise RuntimeError(
                f"{name}: the query service serves {served.json()['model_version']}, not {version}"
            )
        result["search"] = {}
        for concurrency, sent in ((1, queries[: args.queries]), (args.concurrency, queries)):
            measured = search(stack.query.url, sent, args.k, concurrency)
            result["search"][f"c{concurrency}"] = measured
            log.info(
                "   search c=%d: p50 %s ms, %s q/s, %d errors",
                concurrency,
                measured["client"]["p50_ms"],
                measured["queries_per_s"],
                measured["errors"],
            )
        # One query worker's threads: what the service computes for itself (see ServiceSettings).
        threads = max(1, len(os.sched_getaffinity(0)) // args.query_workers)
        variant: Literal["fp32", "int8"] = "int8" if extra.get("QUERY_ONNX_VARIANT") == "int8" else "fp32"
        result["floor"] = floor(
            engine,
            weights,
            version,
            stack.chroma_port,
            stack.prefix,
            queries[: args.queries],
            args.k,
            threads,
            variant,
        )
        result["http_p50_over_floor"] = round(
            result["search"]["c1"]["client"]["p50_ms"] / result["floor"]["total"]["p50_ms"], 2
        )
        log.info(
            "   floor p50 %s ms (HTTP p50 is %.2fx)",
            result["floor"]["total"]["p50_ms"],
            result["http_p50_over_floor"],
        )
        result["peak_rss_mb"] = {p.name: p.peak_rss_mb() for p in (stack.query, stack.ingest, stack.chroma)}
    return result


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
        int8 = any("INGEST_ONNX_VARIANT" in CONFIGS[n][1] for n in names)
        weights, version = served_weights(args.weights_dir, scratch, int8)
        results["model_version"] = version
        for name in names:
            engine, extra = CONFIGS[name]
            results["configs"][name] = run_config(
                name, engine, extra, args, weights, version, work, work.queries, scratch
            )
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
