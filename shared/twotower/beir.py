"""Reading a BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str


def iter_corpus(folder: str | Path) -> Iterator[BeirDoc]:
    with open(Path(folder) / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                yield BeirDoc(str(row["_id"]), row.get("title") or "", row.get("text") or "")


def load_corpus(folder: str | Path) -> dict[str, BeirDoc]:
    return {doc.id: doc for doc in iter_corpus(folder)}


def load_queries(folder: str | Path) -> dict[str, str]:
    with open(Path(folder) / "queries.jsonl", encoding="utf-8") as f:
        return {str(row["_id"]): row["text"] for row in map(json.loads, filter(str.strip, f))}


def load_qrels(folder: str | Path, split: str) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance}, keeping only relevance > 0."""
    qrels: dict[str, dict[str, int]] = {}
    with open(Path(folder) / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            score = int(row["score"])
            if score > 0:
                qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = score
    return qrels
