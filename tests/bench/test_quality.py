"""bench.quality's metrics agree with training.metrics (written separately) on random rankings."""

from __future__ import annotations

import random

import pytest

from bench.quality import metrics
from training.metrics import mrr_at_k, ndcg_at_k, recall_at_k


@pytest.mark.parametrize("seed", range(20))
def test_metrics_agree_with_training_metrics(seed: int) -> None:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(150)]
    ranked = rng.sample(docs, 120)
    relevant = {d: rng.choice([0, 1, 2]) for d in rng.sample(docs, rng.randint(1, 8))}
    if not any(relevant.values()):
        relevant[ranked[rng.randrange(len(ranked))]] = 1
    ours = metrics(ranked, relevant)
    assert ours["ndcg@10"] == pytest.approx(ndcg_at_k(ranked, relevant, 10))
    assert ours["recall@100"] == pytest.approx(recall_at_k(ranked, relevant, 100))
    assert ours["mrr@10"] == pytest.approx(mrr_at_k(ranked, relevant, 10))
