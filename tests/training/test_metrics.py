"""shared/twotower/metrics.py against an independent implementation: trec_eval itself (pytrec_eval), on
real SciFact runs (BM25 over the full corpus and over titles only, all 300 test claims) and on
edge cases (graded relevance, relevant documents past the cut, empty and short rankings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import pytrec_eval

from twotower.beir import load_corpus, load_qrels, load_queries
from twotower.lexical import BM25
from twotower.metrics import evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k

Run = dict[str, list[str]]
Qrels = dict[str, dict[str, int]]


def trec_eval(run: Mapping[str, Sequence[str]], qrels: Qrels) -> dict[str, dict[str, float]]:
    """Per query: ndcg_cut_10, recall_100 and reciprocal rank within the top 10, from trec_eval."""
    # trec_eval orders by score (ties by document id): strictly decreasing scores keep our order.
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items() if docs}
    top10 = {q: {d: s for d, s in docs.items() if s > len(run[q]) - 10} for q, docs in scored.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(scored)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    return {
        q: {
            "ndcg@10": full[q]["ndcg_cut_10"],
            "recall@100": full[q]["recall_100"],
            "mrr@10": rr[q]["recip_rank"],
        }
        for q in full
    }


def ours(ranked: Sequence[str], relevant: Mapping[str, int]) -> dict[str, float]:
    return {
        "ndcg@10": ndcg_at_k(ranked, relevant, 10),
        "recall@100": recall_at_k(ranked, relevant, 100),
        "mrr@10": mrr_at_k(ranked, relevant, 10),
    }


@pytest.fixture(scope="module")
def scifact_runs(scifact_dir: Path) -> tuple[dict[str, Run], Qrels]:
    corpus, queries = load_corpus(scifact_dir), load_queries(scifact_dir)
    qrels = load_qrels(scifact_dir, "test")
    ids, claims = sorted(corpus), sorted(qrels)
    texts = [queries[q] for q in claims]
    runs = {}
    for name, docs in {
        "bm25": [f"{corpus[d].title} {corpus[d].text}" for d in ids],
        "bm25-titles": [corpus[d].title or corpus[d].text[:80] for d in ids],
    }.items():
        ranked = BM25(ids, docs).search(texts, 100)
        runs[name] = {q: list(r) for q, r in zip(claims, ranked, strict=True)}
    return runs, qrels


@pytest.mark.parametrize("system", ["bm25", "bm25-titles"])
def test_real_scifact_runs_match_trec_eval(scifact_runs: tuple[dict[str, Run], Qrels], system: str) -> None:
    runs, qrels = scifact_runs
    run = runs[system]
    reference = trec_eval(run, qrels)
    assert len(reference) == len(qrels) == 300
    for q, expected in reference.items():
        assert ours(run[q], qrels[q]) == pytest.approx(expected, abs=1e-4), q  # trec_eval prints 4 decimals
    means = {
        m: sum(r[m] for r in reference.values()) / len(reference) for m in ("ndcg@10", "recall@100", "mrr@10")
    }
    assert evaluate_run(run, qrels) == pytest.approx(means, abs=1e-6)
    assert 0.3 < means["ndcg@10"] < 0.9  # a real ranking: neither all hits nor all misses


EDGE_CASES: list[tuple[list[str], dict[str, int]]] = [
    (["a", "b"], {"a": 1, "b": 1}),  # perfect
    (["x", "a", "y", "b"], {"a": 1, "b": 1}),  # relevant at ranks 2 and 4
    (["b", "a"], {"a": 2, "b": 1}),  # graded: gains are the grades themselves
    ([f"x{i}" for i in range(10)] + ["a"], {"a": 1}),  # just past the cut
    ([f"r{i}" for i in range(10)], {f"r{i}": 1 for i in range(12)}),  # more relevant than k
    (["x"], {"a": 1, "b": 2, "c": 1}),  # nothing relevant found
    ([f"d{i}" for i in range(150)], {"d5": 1, "d120": 1, "z": 1}),  # recall cut at 100
]


@pytest.mark.parametrize(("ranked", "relevant"), EDGE_CASES)
def test_edge_cases_match_trec_eval(ranked: list[str], relevant: dict[str, int]) -> None:
    expected = trec_eval({"q": ranked}, {"q": relevant})["q"]
    assert ours(ranked, relevant) == pytest.approx(expected, abs=1e-4)


def test_evaluate_run_scores_missing_queries_zero_and_skips_queries_without_relevant_documents() -> None:
    # Unlike trec_eval's default (which drops a query the run lacks), a query the system answered
    # with nothing counts as 0: a retriever must not look better by failing.
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    got = evaluate_run({"q1": ["a"], "q3": ["c"]}, qrels)
    assert got == pytest.approx({"ndcg@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5})
    with pytest.raises(ValueError):
        evaluate_run({"q": ["a"]}, {"q": {"a": 0}})
