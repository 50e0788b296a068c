"""Scoring (the hybrid score, its normalisation, its reasons) and the business rules."""

from __future__ import annotations

import random

import pytest

from reco.catalog import Item
from reco.ports import RecoInputs, Related
from reco.rules import RuleOptions, boost_new_items, select
from reco.scoring import Candidate, score, similar
from reco.settings import SignalWeights

pytestmark = pytest.mark.unit


def _inputs(**related: Related) -> RecoInputs:
    return RecoInputs(
        context=list(related), purchases=[], related=dict(related), popular=[("p", 100.0)]
    )


def test_most_recent_context_item_leads() -> None:
    inputs = _inputs(
        a=Related(coview=[("x", 10.0)]),  # most recent
        b=Related(coview=[("y", 1000.0)]),  # older, with bigger raw counts
    )
    ranked = score(inputs, SignalWeights(), history_decay=0.5, context_items=10)
    order = [c.item_id for c in ranked]
    assert order.index("x") < order.index("y")


def test_signals_add_up_with_their_weights() -> None:
    inputs = _inputs(a=Related(coview=[("x", 4.0), ("y", 2.0)], sequence=[("y", 1.0)]))
    w = SignalWeights(coview=1.0, sequence=2.0, popularity=0.0, recency=0.0)
    ranked = {c.item_id: c for c in score(inputs, w, history_decay=1.0, context_items=10)}
    assert ranked["x"].score == pytest.approx(1.0)
    assert ranked["y"].score == pytest.approx(0.5 + 2.0)
    assert ranked["y"].reasons()[0] == ("sequence", "a")


def test_zero_weight_signal_is_ignored() -> None:
    inputs = _inputs(a=Related(coview=[("x", 4.0)]))
    w = SignalWeights(coview=0.0, sequence=0.0, popularity=1.0, recency=0.0)
    assert [c.item_id for c in score(inputs, w, history_decay=1.0, context_items=10)] == ["p"]


def test_cold_user_gets_popular_items() -> None:
    inputs = RecoInputs(context=[], purchases=[], related={}, popular=[("p", 5.0), ("q", 1.0)])
    ranked = score(inputs, SignalWeights(), history_decay=0.7, context_items=10)
    assert [c.item_id for c in ranked] == ["p", "q"]
    assert ranked[0].reasons() == [("popularity", None)]


def test_ties_are_broken_by_item_id() -> None:
    inputs = _inputs(a=Related(coview=[("z", 1.0), ("m", 1.0)]))
    w = SignalWeights(popularity=0.0, recency=0.0)
    assert [c.item_id for c in score(inputs, w, history_decay=1.0, context_items=10)] == [
        "m",
        "z",
    ]


@pytest.mark.parametrize("seed", range(10))
def test_ranking_is_by_score_then_item_id_and_without_skips_only_the_excluded(seed: int) -> None:
    rng = random.Random(seed)
    values = (1.0, 2.0, 4.0)  # few distinct values: many exact ties
    related = {
        ctx: Related(
            coview=[(rng.choice("abcdefghij"), rng.choice(values)) for _ in range(5)],
            sequence=[(rng.choice("abcdefghij"), rng.choice(values)) for _ in range(3)],
        )
        for ctx in "xyz"
    }
    inputs = RecoInputs(context=list(related), purchases=[], related=related, popular=[])
    ranked = score(inputs, SignalWeights(), history_decay=1.0, context_items=10)
    pairs = [(c.item_id, c.score) for c in ranked]
    assert pairs == sorted(pairs, key=lambda kv: (-kv[1], kv[0]))
    exclude = set(rng.sample("abcdefghijxyz", 4))
    assert [c.item_id for c in ranked.without(exclude)] == [
        item for item, _ in pairs if item not in exclude
    ]


def test_similar_excludes_the_item_itself() -> None:
    ranked = similar(Related(coview=[("b", 1.0)]), [("a", 9.0)], SignalWeights(), "a")
    assert [c.item_id for c in ranked] == ["b"]


ITEMS = {
    "a": Item("a", category="shoes", price=50.0),
    "b": Item("b", category="shoes", price=150.0),
    "c": Item("c", category="socks", price=5.0, in_stock=False),
    "d": Item("d", category="socks", price=8.0),
}


def _ranked(*ids: str) -> list[Candidate]:
    return [Candidate(i, float(10 - n)) for n, i in enumerate(ids)]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (RuleOptions(), ["b", "d", "unknown"]),
        (RuleOptions(exclude_seen=False), ["a", "b", "d", "unknown"]),
        (RuleOptions(exclude_seen=False, in_stock_only=False), ["a", "b", "c", "d", "unknown"]),
        (RuleOptions(category="socks"), ["d"]),
        (RuleOptions(exclude_seen=False, min_price=10, max_price=100), ["a"]),
        (RuleOptions(exclude_seen=False, max_per_category=1), ["a", "d", "unknown"]),
        (RuleOptions(exclude_seen=False, exclude_purchased=False), ["a", "b", "d", "e", "unknown"]),
    ],
)
def test_rules(options: RuleOptions, expected: list[str]) -> None:
    ranked = _ranked("a", "b", "c", "d", "e", "unknown")
    chosen = select(ranked, ITEMS, options, seen={"a"}, purchased={"e"}, count=10)
    assert [c.item_id for c in chosen] == expected


def test_count_limits_the_page() -> None:
    chosen = select(_ranked("a", "b", "d"), ITEMS, RuleOptions(), seen=(), purchased=(), count=2)
    assert [c.item_id for c in chosen] == ["a", "b"]


def test_new_items_get_a_fading_boost() -> None:
    now = 100 * 86400.0
    items = {"old": Item("old", created_at=0.0), "new": Item("new", created_at=now - 86400)}
    ranked = [Candidate("old", 1.0), Candidate("new", 0.9)]
    boosted = boost_new_items(ranked, items, now, boost=0.5, days=7)
    assert [c.item_id for c in boosted] == ["new", "old"]
    assert boosted[0].score == pytest.approx(0.9 * (1 + 0.5 * 6 / 7))
