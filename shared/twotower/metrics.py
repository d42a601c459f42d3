"""Ranking metrics as BEIR reports them, computed by trec_eval itself (pytrec_eval).

`run`: query id -> document ids, best first; `qrels`: query id -> {document id: relevance}. Queries
with no relevant document are skipped; one with no results scores 0 (trec_eval would drop it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytrec_eval

Run = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


def _scored(ranked: Sequence[str]) -> dict[str, float]:
    # trec_eval orders by score: strictly decreasing scores keep the run's order (a repeated id
    # keeps its first rank).
    scores: dict[str, float] = {}
    for rank, doc in enumerate(ranked):
        scores.setdefault(doc, float(-rank))
    return scores


def evaluate_run(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10 (linear gains), Recall@100 and MRR@10 over the queries with relevant documents."""
    judged = {q: dict(rel) for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
    if not judged:
        raise ValueError("qrels hold no relevant documents")
    scored = {q: s for q in judged if (s := _scored(run.get(q, ())))}
    top10 = {q: {d: s for d, s in docs.items() if s > -10} for q, docs in scored.items()}
    full = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.100"}).evaluate(scored)
    # trec_eval's recip_rank has no cut: run on the top 10 alone, it is MRR@10.
    first = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top10)
    totals = {
        "ndcg@10": sum(m["ndcg_cut_10"] for m in full.values()),
        "recall@100": sum(m["recall_100"] for m in full.values()),
        "mrr@10": sum(m["recip_rank"] for m in first.values()),
    }
    return {name: value / len(judged) for name, value in totals.items()}
