"""nDCG@10 / Recall@100 / MRR@10 of a published version, the untrained base model and BM25.

    python -m training.evaluate --data ../shared/data/scifact --split test --weights-dir weights
    python -m training.evaluate --data ../shared/data/npl --systems latest,base --out runs/npl.json

Retrieval is exhaustive (exact cosine over the whole corpus); documents are `title + " " + text`,
embedded as the ingestion service embeds them (long ones as passages, a document scoring its best
passage; `--no-passages` truncates each to the model's window instead); metrics are trec_eval's
(`twotower.metrics`). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from training.data import doc_text
from training.retrieval import SERVED_PASSAGES, dense_search
from twotower import DualTowerWithFC, ModelConfig, latest_version, load_published, model_version
from twotower.beir import load_corpus, load_qrels, load_queries
from twotower.lexical import BM25
from twotower.metrics import evaluate_run

log = logging.getLogger("training.evaluate")
SYSTEMS = ("latest", "base", "bm25")


def evaluate(
    data: str | Path,
    split: str,
    systems: list[str],
    weights_dir: str | Path = "weights",
    version: str | None = None,
    base_model: str = ModelConfig.base_model,
    batch_size: int = 64,
    device: str | None = None,
    passages: bool = True,
) -> dict[str, Any]:
    corpus = load_corpus(data)
    queries = load_queries(data)
    qrels = load_qrels(data, split)
    qids = sorted(q for q in qrels if q in queries)
    doc_ids = sorted(corpus)
    texts = [doc_text(corpus[d]) for d in doc_ids]
    q_texts = [queries[q] for q in qids]
    results: dict[str, Any] = {}
    for system in systems:
        started = time.monotonic()
        info: dict[str, Any] = {}
        if system == "bm25":
            ranked = BM25(doc_ids, texts).search(q_texts, 100)
        else:
            if system == "base":
                model = DualTowerWithFC(ModelConfig(base_model=base_model), device=device)
            else:
                if version is None and latest_version(weights_dir) is None:
                    log.warning("nothing published under %s: skipping 'latest'", weights_dir)
                    continue
                model = load_published(weights_dir, version, device=device)
            info["version"] = model_version(model)
            log.info("%s: model version %s, embedding %d documents", system, info["version"], len(texts))
            ranked = dense_search(
                model,
                q_texts,
                doc_ids,
                [corpus[d] for d in doc_ids],
                100,
                batch_size=batch_size,
                progress=True,
                passages=SERVED_PASSAGES if passages else None,
            )
        info.update(evaluate_run(dict(zip(qids, ranked, strict=True)), qrels))
        info["seconds"] = round(time.monotonic() - started, 1)
        results[system] = info
    return {
        "data": str(data),
        "split": split,
        "passages": passages,
        "queries": len(qids),
        "documents": len(doc_ids),
        "systems": results,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"{Path(report['data']).name} {report['split']}: {report['queries']} queries, "
        f"{report['documents']} documents",
        f"{'system':<22} {'nDCG@10':>8} {'R@100':>8} {'MRR@10':>8} {'seconds':>8}",
    ]
    for name, m in report["systems"].items():
        label = f"{name} ({m['version']})" if "version" in m else name
        lines.append(
            f"{label:<22} {m['ndcg@10']:>8.4f} {m['recall@100']:>8.4f} {m['mrr@10']:>8.4f} {m['seconds']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--weights-dir", default="weights")
    parser.add_argument("--version", default=None, help="published version for 'latest' (default: LATEST)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {SYSTEMS}")
    parser.add_argument("--base-model", default=ModelConfig.base_model)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--no-passages",
        action="store_true",
        help="embed each document truncated to the model's window, instead of as the service does "
        "(passages of long documents, a document scoring its best passage)",
    )
    parser.add_argument("--out", default=None, help="JSON report (default runs/eval-<data>-<split>.json)")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {SYSTEMS}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    report = evaluate(
        args.data,
        args.split,
        systems,
        args.weights_dir,
        args.version,
        args.base_model,
        args.batch_size,
        args.device,
        passages=not args.no_passages,
    )
    out = Path(args.out or f"runs/eval-{Path(args.data).name}-{args.split}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
