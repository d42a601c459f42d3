"""What the benchmarks send: documents and queries from a BEIR folder, or the pydoc topics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twotower.beir import load_queries
from twotower.corpus import open_corpus


@dataclass
class Workload:
    name: str
    documents: list[dict[str, Any]]  # ingestion API documents, ids prefixed so they can be removed
    queries: list[str]


ID_PREFIX = "bench-"
# SciFact in BEIR layout beside the project root (never inside it): every benchmark's default.
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def load_workload(corpus: str | None, n_docs: int, n_queries: int) -> Workload:
    source = open_corpus(corpus, n_docs)
    documents = [{**d, "id": f"{ID_PREFIX}{d['id']}"} for d in source.documents]
    if corpus and (Path(corpus) / "queries.jsonl").is_file():
        queries = list(load_queries(corpus).values())[:n_queries]
    else:
        # No queries shipped with the corpus: ask about each document's title.
        titles = [d.get("title") or d["text"][:80] for d in documents]
        queries = [f"what does {titles[i % len(titles)]} mean?" for i in range(n_queries)]
    return Workload(source.name, documents, queries)
