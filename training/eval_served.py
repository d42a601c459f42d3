"""The evaluation metrics measured through the product: ingestion API in, query API out.

    python -m training.eval_served --data ../shared/data/scifact --split test \
        --ingest-url http://localhost:8001 --query-url http://localhost:8000

Posts the BEIR corpus through `twotower.client`, sends every query of the split to `/search` with
k=100 and scores the answers as `training.evaluate` does. Both services must serve one model version.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from twotower.beir import load_qrels, load_queries
from twotower.client import IngestClient, LoaderError
from twotower.corpus import batches, open_corpus
from twotower.metrics import evaluate_run

log = logging.getLogger("training.eval_served")


class ServedEvalError(RuntimeError):
    """A service is unreachable, refused a request, or serves another model version."""


def model_version_of(http: httpx.Client, url: str) -> str | None:
    response = http.get(f"{url.rstrip('/')}/")
    response.raise_for_status()
    version = response.json().get("model_version")
    return str(version) if version else None


def ingest(data: str | Path, ingest_url: str, api_key: str | None, batch_size: int) -> int:
    corpus = open_corpus(str(data), None)
    loaded = 0
    with (
        IngestClient(ingest_url, api_key) as client,
        tqdm(total=corpus.total, unit="doc", desc="ingest") as bar,
    ):
        for batch in batches(corpus.documents, batch_size):
            loaded += int(client.post_documents(batch)["upserted"])
            bar.update(len(batch))
    return loaded


def search_all(
    query_url: str, queries: dict[str, str], k: int = 100, concurrency: int = 4, mode: str = "dense"
) -> tuple[dict[str, list[str]], list[float]]:
    """Every query's ranked ids, and the server's `took_ms` of each search."""
    url = f"{query_url.rstrip('/')}/search"
    with httpx.Client(timeout=120) as http:

        def one(item: tuple[str, str]) -> tuple[str, list[str], float]:
            qid, text = item
            response = http.post(url, json={"query": text, "k": k, "mode": mode})
            if response.status_code != 200:
                raise ServedEvalError(
                    f"POST {url} for query {qid}: HTTP {response.status_code}: {response.text}"
                )
            body = response.json()
            return qid, [hit["id"] for hit in body["results"]], float(body["took_ms"])

        with ThreadPoolExecutor(concurrency) as pool:
            results = list(
                tqdm(pool.map(one, sorted(queries.items())), total=len(queries), desc=f"search ({mode})")
            )
    return {qid: ids for qid, ids, _ in results}, [ms for _, _, ms in results]


def evaluate_served(
    data: str | Path,
    split: str,
    ingest_url: str,
    query_url: str,
    api_key: str | None = None,
    skip_ingest: bool = False,
    batch_size: int = 256,
    concurrency: int = 4,
    modes: tuple[str, ...] = ("dense",),
) -> dict[str, Any]:
    qrels = load_qrels(data, split)
    all_queries = load_queries(data)
    queries = {q: all_queries[q] for q in qrels if q in all_queries}
    with httpx.Client(timeout=30) as http:
        try:
            query_version = model_version_of(http, query_url)
            ingest_version = None if skip_ingest else model_version_of(http, ingest_url)
        except httpx.HTTPError as exc:
            raise ServedEvalError(f"service unreachable: {exc}") from exc
    if ingest_version and query_version and ingest_version != query_version:
        raise ServedEvalError(
            f"ingestion serves model version {ingest_version} but query serves {query_version}: "
            "documents would land in another collection than the one searched"
        )
    started = time.monotonic()
    ingested = 0 if skip_ingest else ingest(data, ingest_url, api_key, batch_size)
    ingest_s = time.monotonic() - started
    report: dict[str, Any] = {
        "data": str(data),
        "split": split,
        "queries": len(queries),
        "model_version": query_version,
        "ingested": ingested,
        "ingest_seconds": round(ingest_s, 1),
    }
    for mode in modes:
        started = time.monotonic()
        run, took_ms = search_all(query_url, queries, 100, concurrency, mode)
        report[mode] = {
            **evaluate_run(run, qrels),
            "search_seconds": round(time.monotonic() - started, 1),
            "took_ms_p50": round(float(np.percentile(took_ms, 50)), 2),
            "took_ms_p95": round(float(np.percentile(took_ms, 95)), 2),
        }
    report["served"] = report[modes[0]]  # the first mode, under its old name
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--ingest-url", default="http://localhost:8001")
    parser.add_argument("--query-url", default="http://localhost:8000")
    parser.add_argument(
        "--api-key", default=os.environ.get("INGEST_API_KEY") or None, help="default $INGEST_API_KEY"
    )
    parser.add_argument("--skip-ingest", action="store_true", help="the corpus is already ingested")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="documents per POST /documents (max 1000)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="parallel /search requests")
    parser.add_argument(
        "--modes", default="dense", help="comma-separated /search modes to score (dense, hybrid)"
    )
    parser.add_argument("--out", default=None, help="JSON report (default runs/served-<data>-<split>.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    try:
        report = evaluate_served(
            args.data,
            args.split,
            args.ingest_url,
            args.query_url,
            args.api_key,
            args.skip_ingest,
            args.batch_size,
            args.concurrency,
            modes,
        )
    except (ServedEvalError, LoaderError) as exc:
        parser.exit(1, f"eval-served: {exc}\n")
    out = Path(args.out or f"runs/served-{Path(args.data).name}-{args.split}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for mode in modes:
        m = report[mode]
        print(
            f"served {report['model_version']} ({mode}): {Path(args.data).name} {args.split} "
            f"{report['queries']} queries: nDCG@10 {m['ndcg@10']:.4f}  R@100 {m['recall@100']:.4f}  "
            f"MRR@10 {m['mrr@10']:.4f}  took_ms p50 {m['took_ms_p50']} p95 {m['took_ms_p95']} "
            f"(searched in {m['search_seconds']:.0f}s)"
        )
    print(f"ingested {report['ingested']} docs in {report['ingest_seconds']:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
