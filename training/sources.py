"""Where training's queries, positives and negatives come from: a BEIR folder's qrels, the search
feedback the query service stored (training/feedback.py), or both."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from training import feedback
from training.data import doc_text, mine_bm25_negatives, split_train_val
from twotower.beir import BeirDoc, load_corpus, load_qrels, load_queries
from twotower.index.store import ChromaStore
from twotower.lexical import BM25

if TYPE_CHECKING:
    from training.train import TrainConfig


@dataclass
class Data:
    corpus: dict[str, BeirDoc]
    queries: dict[str, str]
    known: dict[str, dict[str, int]]  # every known positive (never a negative), val included
    train_qrels: dict[str, dict[str, int]]
    val_qrels: dict[str, dict[str, int]]
    negatives: dict[str, list[str]]
    val_pool: list[str]
    weights: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)  # missing = 1


def qrels_data(cfg: TrainConfig) -> Data:
    """Labelled data: val split from train, BM25 hard negatives, validation pool."""
    corpus = load_corpus(cfg.data)
    queries = load_queries(cfg.data)
    qrels = load_qrels(cfg.data, cfg.split)
    if cfg.max_queries:
        qrels = {q: qrels[q] for q in sorted(qrels)[: cfg.max_queries]}
    train_qrels, val_qrels = split_train_val(qrels, cfg.val_fraction, cfg.seed)
    doc_ids = sorted(corpus)
    bm25 = BM25(doc_ids, [doc_text(corpus[d]) for d in doc_ids])
    negatives = mine_bm25_negatives(bm25, queries, train_qrels, cfg.neg_depth, cfg.seed)
    val_ranked = bm25.search([queries[q] for q in sorted(val_qrels)], cfg.val_depth)
    val_pool = sorted({d for rel in val_qrels.values() for d in rel} | {d for r in val_ranked for d in r})
    return Data(corpus, queries, qrels, train_qrels, val_qrels, negatives, val_pool)


def load_data(cfg: TrainConfig) -> Data:
    """The source's data: qrels, the stored search feedback (training/feedback.py), or both."""
    parts = [qrels_data(cfg)] if cfg.source in ("qrels", "both") else []
    if cfg.source in ("feedback", "both"):
        store = ChromaStore(cfg.chroma_host, cfg.chroma_port, cfg.collection_prefix)
        fb, texts = feedback.load(
            store,
            since=cfg.feedback_since,
            until=cfg.feedback_until or None,
            val_fraction=cfg.val_fraction,
            eta=cfg.propensity_eta,
            max_weight=cfg.max_weight,
            min_clicks=cfg.min_clicks,
        )
        known = {**fb.train_qrels, **fb.val_qrels}
        parts.append(
            Data(
                texts, fb.queries, known, fb.train_qrels, fb.val_qrels, fb.negatives, fb.val_pool, fb.weights
            )
        )
    data = Data({}, {}, {}, {}, {}, {}, [])
    for part in parts:  # query ids never clash: feedback's start with "fb-"
        for name in ("corpus", "queries", "known", "train_qrels", "val_qrels", "negatives", "weights"):
            getattr(data, name).update(getattr(part, name))
        data.val_pool = sorted(set(data.val_pool) | set(part.val_pool))
    if not data.train_qrels or not data.val_qrels:
        raise SystemExit(
            f"no training data from {cfg.source!r}: train and val both need queries with positives"
        )
    return data
