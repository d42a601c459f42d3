"""Triplets from search feedback: skip-above negatives, inverse-propensity weights, the time split."""

from __future__ import annotations

import pytest
import torch

from training.data import make_pairs
from training.feedback import Search, build, judgements, merge, propensity_weight, query_id
from training.objectives import mnrl_loss
from twotower.index.feedback import FeedbackEvent

SHOWN = ("a", "b", "c", "d", "e")


def test_skip_above_only_results_above_a_click_are_negatives() -> None:
    positives, negatives = judgements(Search("q", 0, SHOWN, clicked={"c"}), eta=1.0, max_weight=10)
    assert positives == {"c": 3.0}  # examined with probability 1/3: weighs 3
    assert negatives == ["a", "b"]  # d and e may never have been looked at


def test_several_clicks_the_deepest_bounds_the_examined_results() -> None:
    positives, negatives = judgements(Search("q", 0, SHOWN, clicked={"b", "d"}), eta=1.0, max_weight=10)
    assert positives == {"b": 2.0, "d": 4.0}
    assert negatives == ["a", "c"]


def test_a_top_click_has_no_skipped_result() -> None:
    positives, negatives = judgements(Search("q", 0, SHOWN, clicked={"a"}), eta=2.0, max_weight=10)
    assert positives == {"a": 1.0} and negatives == []


def test_explicit_judgements() -> None:
    search = Search("q", 0, SHOWN, clicked={"b", "e"}, relevant={"d"}, not_relevant={"e"})
    positives, negatives = judgements(search, eta=1.0, max_weight=10)
    # A click judged not relevant is no positive; a relevant judgement weighs 1 wherever it was.
    assert positives == {"b": 2.0, "d": 1.0}
    assert negatives == ["a", "e"]


@pytest.mark.parametrize(
    ("rank", "eta", "weight"), [(1, 1.0, 1.0), (4, 0.5, 2.0), (20, 1.0, 10.0), (3, 0.0, 1.0)]
)
def test_propensity_weight_is_the_inverse_examination_probability_clipped(
    rank: int, eta: float, weight: float
) -> None:
    assert propensity_weight(rank, eta, max_weight=10) == pytest.approx(weight)


def event(
    search: str, query: str, at: float, clicked: tuple[str, ...], **kw: tuple[str, ...]
) -> FeedbackEvent:
    return FeedbackEvent(search, at, at + 1, query, "hybrid", "v1", SHOWN, clicked, id=f"{search}-{at}", **kw)


def test_merge_groups_events_by_search_and_drops_searches_without_query_text() -> None:
    searches = merge(
        [
            event("s1", "tea", 10, ("b",)),
            event("s1", "tea", 10, ("d",)),
            event("s2", "", 5, ("a",)),  # stored with QUERY_FEEDBACK_STORE_QUERIES off
        ]
    )
    assert len(searches) == 1 and searches[0].clicked == {"b", "d"}


def test_build_time_split_weights_and_negatives() -> None:
    searches = merge(
        [
            event("s1", "tea", 1, ("c",)),
            event("s2", "tea", 2, ("a",)),  # the same query again: "a" is a positive, so never its negative
            event("s3", "coffee", 3, ("b",)),
            event("s4", "bikes", 4, ("e",)),  # the latest query: validation
            event("s5", "nothing", 5, ()),  # no click: no training query
        ]
    )
    data = build(searches, val_fraction=0.34, eta=1.0, max_weight=10, min_clicks=1)
    tea, coffee, bikes = query_id("tea"), query_id("coffee"), query_id("bikes")
    assert set(data.train_qrels) == {tea, coffee} and set(data.val_qrels) == {bikes}
    assert data.train_qrels[tea] == {"a": 1, "c": 1}
    assert data.negatives[tea] == ["b"] and data.negatives[coffee] == ["a"]
    assert data.val_pool == sorted(SHOWN)
    # Raw weights 1 (a), 3 (c), 2 (b): normalised to mean 1.
    assert data.weights == {(tea, "a"): 0.5, (tea, "c"): 1.5, (coffee, "b"): 1.0}
    pairs = make_pairs(data.train_qrels, data.negatives, 0, data.weights)
    assert sorted((p.query_id, p.positive_id, p.weight) for p in pairs) == sorted(
        [(tea, "a", 0.5), (tea, "c", 1.5), (coffee, "b", 1.0)]
    )


def test_a_click_becomes_a_positive_once_enough_searches_of_the_query_repeat_it() -> None:
    def search(at: float, clicked: set[str], **judged: set[str]) -> Search:
        return Search("tea", at, SHOWN, clicked=clicked, **judged)

    searches = [
        search(1, {"a"}),
        search(2, {"a", "d"}),  # "d": a stray click, never repeated
        search(3, {"c"}, relevant={"e"}),  # "e": judged relevant once, which is enough
        search(4, {"c"}),
    ]
    data = build(searches, val_fraction=0.0, eta=1.0, max_weight=10, min_clicks=2)
    tea = query_id("tea")
    assert data.train_qrels[tea] == {"a": 1, "c": 1, "e": 1}
    # Clicked once is neither a positive nor a negative; "b" was passed over above clicks.
    assert data.negatives[tea] == ["b"]
    # Weights sum over the clicking searches (a: 1 + 1, c: 3 + 3, e: 1), normalised to mean 1.
    assert data.weights[(tea, "c")] == pytest.approx(3 * data.weights[(tea, "a")])
    assert data.weights[(tea, "e")] == pytest.approx(data.weights[(tea, "a")] / 2)
    assert build(searches[:2], val_fraction=0.0, min_clicks=3).train_qrels == {}


def test_weighted_mnrl_counts_each_pair_by_its_weight() -> None:
    torch.manual_seed(0)
    q, d = torch.randn(3, 8), torch.randn(3, 8)
    known = torch.zeros(3, 3, dtype=torch.bool)
    plain = mnrl_loss(q, d, known, 20.0)
    assert mnrl_loss(q, d, known, 20.0, torch.ones(3)).item() == pytest.approx(plain.item())
    only_first = mnrl_loss(q, d, known, 20.0, torch.tensor([3.0, 0.0, 0.0]))
    first_alone = torch.nn.functional.cross_entropy(20.0 * q @ d.T, torch.arange(3), reduction="none")[0]
    assert only_first.item() == pytest.approx(first_alone.item())
