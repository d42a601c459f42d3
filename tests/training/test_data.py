"""Training data: validation split, hard negatives (never a known positive), batches, losses."""

from __future__ import annotations

import pytest
import torch

from training.data import batches, make_pairs, mine_bm25_negatives, split_train_val
from training.objectives import interpolate_, mnrl_loss, positive_mask, triplet_loss
from twotower.lexical import BM25

DOCS = {
    "d1": "aspirin reduces the risk of heart attack",
    "d2": "aspirin and heart attack risk in older adults",
    "d3": "statins lower cholesterol",
    "d4": "cholesterol and heart disease",
    "d5": "exercise improves heart health",
    "d6": "heart attack symptoms in women",
}
QUERIES = {"q1": "does aspirin prevent heart attack", "q2": "statins and cholesterol"}
QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}}


def test_hard_negatives_never_include_a_known_positive() -> None:
    bm25 = BM25(list(DOCS), list(DOCS.values()))
    # BM25 ranks both positives of q1 at the top: they must be filtered, not mined
    assert set(bm25.search([QUERIES["q1"]], 2)[0]) == {"d1", "d2"}
    negatives = mine_bm25_negatives(bm25, QUERIES, QRELS, depth=6, seed=0)
    for q, pool in negatives.items():
        assert pool, q
        assert not set(pool) & set(QRELS[q])
    for epoch in range(3):
        for pair in make_pairs(QRELS, negatives, epoch):
            assert pair.negative_id not in QRELS[pair.query_id]


def test_val_split_is_seeded_disjoint_and_complete() -> None:
    qrels = {str(i): {f"d{i}": 1} for i in range(100)}
    train, val = split_train_val(qrels, 0.1, seed=3)
    assert len(val) == 10 and not set(train) & set(val) and set(train) | set(val) == set(qrels)
    assert split_train_val(qrels, 0.1, seed=3) == (train, val)
    assert split_train_val(qrels, 0.1, seed=4)[1] != val


def test_batches_never_repeat_a_query_or_positive() -> None:
    qrels = {"q1": {"a": 1, "b": 1, "c": 1}, "q2": {"a": 1}, "q3": {"d": 1}}
    pairs = make_pairs(qrels, {}, 0)
    out = batches(pairs, 3, seed=0, epoch=1)
    assert sorted(map(repr, (p for b in out for p in b))) == sorted(map(repr, pairs))
    for b in out:
        assert len({p.query_id for p in b}) == len(b) and len({p.positive_id for p in b}) == len(b)
    assert batches(pairs, 3, seed=0, epoch=1) == out


def test_losses_mask_known_positives() -> None:
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    d = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0]]), dim=-1)
    # doc 1 is (also) a known positive of query 0: it must not push query 0 away from it
    known = positive_mask(["q0", "q1"], ["a", "b"], {"q0": {"a": 1, "b": 1}, "q1": {"b": 1}})
    assert known.tolist() == [[True, True], [False, True]]
    masked = mnrl_loss(q[:1], d, known[:1], scale=20.0)
    unmasked = mnrl_loss(q[:1], d, torch.zeros(1, 2, dtype=torch.bool), scale=20.0)
    assert masked.item() == pytest.approx(0.0, abs=1e-6) and unmasked.item() > 0.5
    # triplet: with a hard negative (docs n..2n-1), loss = relu(margin - pos + neg)
    qq, dd = q[:1], torch.cat([d[1:2], d[:1]])
    assert triplet_loss(qq, dd, torch.zeros(1, 2, dtype=torch.bool), margin=0.2).item() == pytest.approx(
        max(0.0, 0.2 - dd[0, 0].item() + dd[1, 0].item())
    )


def test_interpolate_wise() -> None:
    layer = torch.nn.Linear(2, 2)
    start = {k: torch.zeros_like(v) for k, v in layer.state_dict().items()}
    tuned = {k: v.clone() for k, v in layer.state_dict().items()}
    interpolate_(layer, start, 0.25)
    for k, v in layer.state_dict().items():
        assert torch.allclose(v, 0.25 * tuned[k])


def test_interpolate_keeps_named_layers_tuned() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    start = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    tuned = {k: v.clone() for k, v in net.state_dict().items()}
    interpolate_(net, start, 0.5, keep_tuned=("0.",))
    got = net.state_dict()
    assert torch.equal(got["0.weight"], tuned["0.weight"])
    assert torch.allclose(got["1.weight"], 0.5 * tuned["1.weight"])
