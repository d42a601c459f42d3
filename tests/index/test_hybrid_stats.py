"""Hybrid ranking from stored term statistics: candidates rank exactly as the same candidates
ranked from their texts did, passages stored before statistics existed included."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from tokenizers import Tokenizer

from services.query.search import fuse
from tests.index.conftest import HashEncoder
from twotower.index import passages
from twotower.index.documents import STATS_KEY, Document, DocumentIndex, passage_text, user_metadata
from twotower.index.passages import PassageConfig
from twotower.index.store import ChromaStore, Record
from twotower.lexical import rank_by_bm25, reciprocal_rank_fusion
from twotower.text import format_document

WORDS = [
    "thyroid",
    "cells",
    "dying",
    "the",
    "radioiodine",
    "goitre",
    "Naïve",
    "T-cells",
    "of",
    "interleukin_2",
]
QUERIES = [
    "thyroid cells",
    "dying naïve T-cells",
    "interleukin_2 goitre radioiodine",
    "the of",
    "absent words",
]


def corpus() -> list[Document]:
    docs = []
    for i, combo in enumerate(itertools.islice(itertools.permutations(WORDS, 4), 0, 400, 7)):
        text = " ".join(combo * (1 + i % 3))
        if i % 10 == 0:  # long enough to be split into passages
            text = " ".join([text, *(f"{w}{j}x{i}" for j, w in enumerate(WORDS * 40))])
        docs.append(Document(f"d{i}", text, f"Title {combo[0]}" if i % 2 else None, {"n": i}))
    return docs


def from_texts(query: str, candidates: list[Record]) -> list[tuple[str, float]]:
    """The ranking as the query service made it before statistics: BM25 over the texts."""
    texts = [format_document(passage_text(r), user_metadata(r.metadata)[0]) for r in candidates]
    fused = reciprocal_rank_fusion([list(range(len(candidates))), rank_by_bm25(query, texts)])
    return [(candidates[i].id, score) for i, score in fused]


def test_stats_rank_as_texts_did_and_old_passages_fall_back(
    make_store: Callable[..., ChromaStore], encoders: Callable[[str], HashEncoder]
) -> None:
    store = make_store()
    encoder = encoders("v1")
    index = DocumentIndex(store, "v1", encoder, PassageConfig(tokens=64, overlap=16))
    docs = corpus()
    index.write(docs)
    records = store.get("v1")
    assert len(records) > len(docs) and all(STATS_KEY in r.metadata for r in records)
    probes = [encoder.encode_queries([q])[0] for q in QUERIES]
    expected = [from_texts(q, index.candidates(e, 60)) for q, e in zip(QUERIES, probes, strict=True)]

    def ranked() -> list[list[tuple[str, float]]]:
        out = []
        for query, probe in zip(QUERIES, probes, strict=True):
            candidates = index.candidates(probe, 60)
            out.append([(r.id, score) for r, score in fuse(query, candidates)])
        return out

    assert ranked() == expected
    # Passages written before statistics were stored: every third one loses them.
    stripped = [r.id for r in records[::3]]
    store.collection("v1").update(ids=stripped, metadatas=[{STATS_KEY: None} for _ in stripped])
    assert all(STATS_KEY not in r.metadata for r in store.get("v1", ids=stripped))
    assert ranked() == expected


def test_a_document_that_fits_the_window_is_one_passage(tokenizer: Tokenizer) -> None:
    """Between the passage size (200) and the window (256): one passage, no split."""
    text = " ".join(f"cell{i}" for i in range(105))  # about 230 tokens ("cell", "##N"...)
    title = "Thyroid"
    n = len(tokenizer.encode(f"{title} {text}").ids)  # with [CLS] and [SEP]
    assert 200 < n <= 256
    assert passages.split(text, title, tokenizer, 256, PassageConfig()) == [(0, len(text))]
    longer = text + " more words past the window" * 10
    assert len(passages.split(longer, title, tokenizer, 256, PassageConfig())) == 2
    # Batched splitting is the same split.
    many = [(text, title), (longer, None), (longer, title), ("", None)]
    assert passages.split_many(many, tokenizer, 256, PassageConfig()) == [
        passages.split(t, ti, tokenizer, 256, PassageConfig()) for t, ti in many
    ]
