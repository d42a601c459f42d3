"""Our use of trec_eval (twotower.metrics.evaluate_run) against values computed by hand: the run's
order is what ranks (not the ids), graded gains, the cuts at 10 and 100, and how queries without
results or without relevant documents count."""

from __future__ import annotations

import math

import pytest

from twotower.metrics import evaluate_run


def discount(rank: int) -> float:
    return 1 / math.log2(rank + 1)


CASES: list[tuple[list[str], dict[str, int], dict[str, float]]] = [
    (["a", "b"], {"a": 1, "b": 1}, {"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}),
    # relevant at ranks 2 and 4, behind ids that sort after them
    (
        ["x", "a", "y", "b"],
        {"a": 1, "b": 1},
        {"ndcg@10": (discount(2) + discount(4)) / (1 + discount(2)), "recall@100": 1.0, "mrr@10": 0.5},
    ),
    # graded: the gains are the grades
    (
        ["b", "a"],
        {"a": 2, "b": 1},
        {"ndcg@10": (1 + 2 * discount(2)) / (2 + discount(2)), "recall@100": 1.0, "mrr@10": 1.0},
    ),
    # the one relevant document just past the cut of 10
    ([f"x{i}" for i in range(10)] + ["a"], {"a": 1}, {"ndcg@10": 0.0, "recall@100": 1.0, "mrr@10": 0.0}),
    # more relevant documents than k
    (
        [f"r{i}" for i in range(10)],
        {f"r{i}": 1 for i in range(12)},
        {"ndcg@10": 1.0, "recall@100": 10 / 12, "mrr@10": 1.0},
    ),
    # recall cut at 100; the ideal ranking holds every relevant document
    (
        [f"d{i}" for i in range(150)],
        {"d5": 1, "d120": 1, "z": 1},
        {"ndcg@10": discount(6) / (1 + discount(2) + discount(3)), "recall@100": 1 / 3, "mrr@10": 1 / 6},
    ),
    (["x"], {"a": 1, "b": 2}, {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}),
]


@pytest.mark.parametrize(("ranked", "relevant", "expected"), CASES)
def test_one_query_scores_as_computed_by_hand(
    ranked: list[str], relevant: dict[str, int], expected: dict[str, float]
) -> None:
    assert evaluate_run({"q": ranked}, {"q": relevant}) == pytest.approx(expected, abs=1e-4)


def test_the_mean_counts_unanswered_queries_as_zero_and_skips_queries_without_relevant_documents() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}, "q4": {"d": 1}}
    run = {"q1": ["a"], "q3": ["c"], "q4": ["x", "d"]}
    expected_q4 = {"ndcg@10": discount(2), "recall@100": 1.0, "mrr@10": 0.5}
    assert evaluate_run(run, qrels) == pytest.approx(
        {m: (1 + 0 + v) / 3 for m, v in expected_q4.items()}, abs=1e-4
    )
    with pytest.raises(ValueError):
        evaluate_run({"q": ["a"]}, {"q": {"a": 0}})
