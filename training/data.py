"""Training data from a BEIR folder: a validation split carved from train, pairs, hard negatives."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from twotower import format_document
from twotower.beir import BeirDoc
from twotower.lexical import BM25


@dataclass(frozen=True)
class Pair:
    """One (query, positive) pair and a mined hard negative that is not a known positive."""

    query_id: str
    positive_id: str
    negative_id: str | None
    weight: float = 1.0  # the pair's share of the loss (search feedback: inverse propensity)


def split_train_val(
    qrels: Mapping[str, Mapping[str, int]], val_fraction: float, seed: int
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Hold out a fixed, seeded fraction of the train queries for model selection."""
    queries = sorted(qrels)
    random.Random(seed).shuffle(queries)
    n_val = round(len(queries) * val_fraction)
    val = {q: dict(qrels[q]) for q in sorted(queries[:n_val])}
    train = {q: dict(qrels[q]) for q in sorted(queries[n_val:])}
    return train, val


def doc_text(doc: BeirDoc) -> str:
    return format_document(doc.text, doc.title)


def mine_bm25_negatives(
    bm25: BM25,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    depth: int,
    seed: int,
) -> dict[str, list[str]]:
    """query id -> BM25's top-`depth` documents minus every known positive of that query.

    Known positives are all documents the qrels list for the query (in any split handed in),
    so a hard negative is never a document someone judged relevant.
    """
    ids = sorted(qrels)
    ranked = bm25.search([queries[q] for q in ids], depth)
    rng = random.Random(seed)
    negatives = {}
    for q, docs in zip(ids, ranked, strict=True):
        pool = [d for d in docs if qrels[q].get(d, 0) <= 0]
        rng.shuffle(pool)
        negatives[q] = pool
    return negatives


def make_pairs(
    qrels: Mapping[str, Mapping[str, int]],
    negatives: Mapping[str, list[str]],
    epoch: int,
    weights: Mapping[tuple[str, str], float] | None = None,
) -> list[Pair]:
    """One pair per (query, positive); the hard negative rotates through the mined pool by epoch.
    `weights`: (query, positive) -> the pair's weight (missing: 1)."""
    pairs = []
    for q in sorted(qrels):
        pool = negatives.get(q, [])
        for j, pos in enumerate(sorted(d for d, g in qrels[q].items() if g > 0)):
            neg = pool[(epoch + j) % len(pool)] if pool else None
            pairs.append(Pair(q, pos, neg, (weights or {}).get((q, pos), 1.0)))
    return pairs


def batches(pairs: list[Pair], batch_size: int, seed: int, epoch: int) -> list[list[Pair]]:
    """Seeded shuffle; no batch holds the same query or the same positive twice (they would be
    false in-batch negatives for each other), so clashing pairs move to a later batch. Other known
    positives that meet in a batch are masked in the loss (see `objectives.positive_mask`)."""
    order = list(pairs)
    random.Random(seed * 1000 + epoch).shuffle(order)
    out: list[list[Pair]] = []
    pending = order
    while pending:
        batch: list[Pair] = []
        seen_queries: set[str] = set()
        seen_docs: set[str] = set()
        rest = []
        for p in pending:
            if len(batch) < batch_size and p.query_id not in seen_queries and p.positive_id not in seen_docs:
                batch.append(p)
                seen_queries.add(p.query_id)
                seen_docs.add(p.positive_id)
            else:
                rest.append(p)
        out.append(batch)
        pending = rest
    return out
