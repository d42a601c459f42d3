"""`python -m bench.quality`: what an engine variant costs in retrieval quality, in-process.

    python -m bench.quality --data ../shared/data/scifact --variants torch,fp32,int8

Encodes a BEIR folder's corpus and test queries with each variant of one published version (torch,
onnx fp32, onnx int8, openvino: the fp32 graphs on OpenVINO), ranks by exact cosine and prints
nDCG@10 / Recall@100 / MRR@10 (trec_eval definitions, `twotower.metrics`) and the smallest cosine
of each variant's document vectors to the first variant's. The served numbers come from `make eval-served`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from twotower import format_document
from twotower.beir import load_corpus, load_qrels, load_queries
from twotower.engine import Engine, open_encoder
from twotower.metrics import evaluate_run
from twotower.registry import latest_version

log = logging.getLogger("bench.quality")
ROOT = Path(__file__).resolve().parents[1]


def evaluate(data: Path, weights: Path, version: str, variants: list[str], threads: int) -> dict[str, Any]:
    corpus, queries, qrels = load_corpus(data), load_queries(data), load_qrels(data, "test")
    qids = sorted(q for q in qrels if q in queries and any(g > 0 for g in qrels[q].values()))
    doc_ids = sorted(corpus)
    texts = [format_document(corpus[d].text, corpus[d].title) for d in doc_ids]
    results: dict[str, Any] = {}
    first: np.ndarray | None = None
    for variant in variants:
        engine: Engine = "torch" if variant == "torch" else "onnx"
        encoder = open_encoder(
            [weights],
            version,
            engine=engine,
            threads=threads,
            device="cpu",
            variant="int8" if variant == "int8" else "fp32",
            backend="openvino" if variant == "openvino" else "onnxruntime",
        )
        started = time.perf_counter()
        docs = encoder.encode_documents(texts)
        query_vectors = encoder.encode_queries([queries[q] for q in qids])
        seconds = time.perf_counter() - started
        encoder.close()
        top = np.argsort(-(query_vectors @ docs.T), axis=1)[:, :100]
        run = {q: [doc_ids[j] for j in top[i]] for i, q in enumerate(qids)}
        row: dict[str, Any] = {m: round(v, 4) for m, v in evaluate_run(run, qrels).items()}
        first = docs if first is None else first
        row["min_cosine_to_first"] = round(float((docs * first).sum(axis=1).min()), 5)
        row["encode_s"] = round(seconds, 1)
        results[variant] = row
        log.info("%s %s: %s", data.name, variant, row)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="BEIR folder with a test split")
    p.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    p.add_argument("--version", help="default: LATEST")
    p.add_argument(
        "--variants",
        default="torch,fp32,int8",
        help="torch, fp32 (onnx), int8 (onnx), openvino (onnx fp32 graphs on OpenVINO)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="JSON (default runs/quality-<data>.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    version = args.version or latest_version(args.weights_dir)
    if version is None:
        p.error(f"nothing published in {args.weights_dir} (python -m twotower.engine.export --base --int8)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    results = {
        "version": version,
        "data": args.data.name,
        "variants": evaluate(args.data, args.weights_dir, version, variants, args.threads),
    }
    out = args.out or ROOT / "runs" / f"quality-{args.data.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
