"""Metric functions against hand-computed values (trec_eval definitions)."""

from __future__ import annotations

import math

import pytest

from training.metrics import evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_perfect_and_empty() -> None:
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1}) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"a": 1}) == 0.0
    assert ndcg_at_k([], {"a": 1}) == 0.0


def test_ndcg_hand_computed() -> None:
    # relevant at ranks 2 and 4 of 2 relevant: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(["x", "a", "y", "b"], {"a": 1, "b": 1}) == pytest.approx(dcg / idcg)


def test_ndcg_graded_gains_are_linear_and_cut_at_k() -> None:
    # trec_eval uses the relevance value itself as the gain (not 2^rel - 1)
    got = ndcg_at_k(["b", "a"], {"a": 2, "b": 1})
    assert got == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # a relevant document at rank 11 does not count for nDCG@10, but the ideal still has it
    ranked = [f"x{i}" for i in range(10)] + ["a"]
    assert ndcg_at_k(ranked, {"a": 1}, 10) == 0.0
    # the ideal ranking is cut at k too: 12 relevant docs, 10 of them in the top 10 -> 1.0
    rel = {f"r{i}": 1 for i in range(12)}
    assert ndcg_at_k([f"r{i}" for i in range(10)], rel, 10) == pytest.approx(1.0)


def test_recall_and_mrr() -> None:
    assert recall_at_k(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, 100) == pytest.approx(2 / 3)
    assert recall_at_k(["x", "a"], {"a": 1}, 1) == 0.0
    assert mrr_at_k(["x", "y", "a", "b"], {"a": 1, "b": 1}) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"] * 10 + ["a"], {"a": 1}, 10) == 0.0


def test_evaluate_run_averages_and_scores_missing_queries_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q3 has no relevant doc: skipped
    run = {"q1": ["a"], "q3": ["c"]}  # q2 returned nothing: counts as 0
    got = evaluate_run(run, qrels)
    assert got == pytest.approx({"ndcg@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5})
    with pytest.raises(ValueError):
        evaluate_run(run, {"q": {"a": 0}})
