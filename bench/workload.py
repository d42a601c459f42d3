"""What the benchmarks send: documents and queries from a BEIR folder, or the pydoc topics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

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
    queries_file = Path(corpus) / "queries.jsonl" if corpus and Path(corpus).is_dir() else None
    if queries_file is not None and queries_file.is_file():
        with open(queries_file, encoding="utf-8") as f:
            queries = [json.loads(line)["text"] for line in islice(filter(str.strip, f), n_queries)]
    else:
        # No queries shipped with the corpus: ask about each document's title.
        titles = [d.get("title") or d["text"][:80] for d in documents]
        queries = [f"what does {titles[i % len(titles)]} mean?" for i in range(n_queries)]
    return Workload(source.name, documents, queries)
