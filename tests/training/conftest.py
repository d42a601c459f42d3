"""A small BEIR folder cut from SciFact, so training and evaluation tests take seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twotower.beir import load_corpus, load_qrels, load_queries


def write_beir(
    folder: Path, corpus: dict, queries: dict[str, str], qrels: dict[str, dict[str, int]], split: str
) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for doc in corpus.values():
            f.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for q in sorted(queries):
            f.write(json.dumps({"_id": q, "text": queries[q]}) + "\n")
    with open(folder / "qrels" / f"{split}.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in sorted(qrels):
            for d, score in sorted(qrels[q].items()):
                f.write(f"{q}\t{d}\t{score}\n")


def cut(scifact: Path, folder: Path, split: str, n_queries: int, n_extra_docs: int) -> Path:
    corpus, queries, qrels = load_corpus(scifact), load_queries(scifact), load_qrels(scifact, split)
    qrels = {q: qrels[q] for q in sorted(qrels)[:n_queries]}
    keep = {d for rel in qrels.values() for d in rel} | set(sorted(corpus)[:n_extra_docs])
    write_beir(folder, {d: corpus[d] for d in sorted(keep)}, {q: queries[q] for q in qrels}, qrels, split)
    return folder


@pytest.fixture(scope="session")
def mini_scifact(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 train claims, their abstracts and 200 other abstracts."""
    return cut(scifact_dir, tmp_path_factory.mktemp("mini-scifact"), "train", 80, 200)
