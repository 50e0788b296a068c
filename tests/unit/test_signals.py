"""Signals: each pure function on hand-worked cases, then a whole batch through apply_event."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable

import pytest

from reco.events import Event
from reco.settings import EngineSettings
from reco.signals import FeatureDelta, ForwardDecay, SignalConfig, UserProfile, apply_event
from reco.signals.coview import coview_partners
from reco.signals.history import context_weights, remember
from reco.signals.neighbours import (
    Neighbour,
    Posting,
    QueryItem,
    neighbour_scores,
    query,
    select_neighbours,
)
from reco.signals.sequence import transitions
from reco.signals.session import assign_session
from reco.signals.state import SessionState

pytestmark = pytest.mark.unit
DAY = 86400.0


def test_coview_pairs_with_distinct_window_items_most_recent_first() -> None:
    assert coview_partners(["a", "b", "a", "c"], "d", window=10) == ["c", "a", "b"]


def test_coview_window_bounds_how_far_back() -> None:
    assert coview_partners(["a", "b", "c", "d"], "e", window=2) == ["d", "c"]


def test_coview_revisit_adds_nothing() -> None:
    assert coview_partners(["a", "b", "c"], "b", window=10) == []
    # Outside the window it is a new visit again.
    assert coview_partners(["a", "b", "c"], "a", window=2) == ["c", "b"]


def test_transitions_are_directed_and_distance_weighted() -> None:
    assert transitions(["a", "b", "c"], "d", steps=3) == [("c", 1.0), ("b", 0.5), ("a", 1 / 3)]
    assert transitions(["a", "b", "c"], "d", steps=1) == [("c", 1.0)]
    assert transitions(["a", "d"], "d", steps=2) == [("a", 0.5)]  # no self-transition
    assert transitions([], "d", steps=3) == []


def test_forward_decay_halves_per_half_life_and_ranks_without_rescoring() -> None:
    decay = ForwardDecay(half_life_s=DAY, landmark=1000.0)
    old = decay.weight(1.0, 1000.0)
    new = decay.weight(1.0, 1000.0 + DAY)
    assert new == pytest.approx(2 * old)
    # Value at a later time: the old event has lost three halvings, the new one two.
    now = 1000.0 + 3 * DAY
    assert decay.value_at(old, now) == pytest.approx(0.125)
    assert decay.value_at(new, now) == pytest.approx(0.25)


def test_forward_decay_rescale_keeps_ratios() -> None:
    decay = ForwardDecay(half_life_s=DAY, landmark=0.0)
    a, b = decay.weight(3.0, 10 * DAY), decay.weight(1.0, 12 * DAY)
    factor = decay.rescale_factor(11 * DAY)
    assert (a * factor) / (b * factor) == pytest.approx(a / b)
    assert ForwardDecay(DAY, 11 * DAY).weight(1.0, 12 * DAY) == pytest.approx(b * factor)


def test_session_from_inactivity_gap() -> None:
    profile = UserProfile("u")
    s1 = assign_session(profile, 0.0, None, gap_s=1800)
    profile.last_ts = 0.0
    assert assign_session(profile, 1799.0, None, gap_s=1800) == s1
    profile.last_ts = 1799.0
    s2 = assign_session(profile, 1799.0 + 1801, None, gap_s=1800)
    assert s2 != s1
    assert (s1, s2) == ("u#1", "u#2")


def test_given_session_wins() -> None:
    profile = UserProfile("u", last_ts=0.0, session_id="u#1", session_seq=1)
    assert assign_session(profile, 10.0, "checkout-7", gap_s=1800) == "checkout-7"


def test_recent_items_most_recent_first_capped_one_entry_per_item() -> None:
    p = UserProfile("u")
    for ts, item in enumerate(["a", "b", "c", "a", "d"]):
        remember(p, item, float(ts), 1.0, purchase=False, max_recent=3, max_purchases=2)
    assert [r[0] for r in p.recent] == ["d", "a", "c"]


def test_late_event_does_not_jump_ahead() -> None:
    p = UserProfile("u")
    remember(p, "a", 10.0, 1.0, purchase=False, max_recent=5, max_purchases=5)
    remember(p, "b", 20.0, 1.0, purchase=False, max_recent=5, max_purchases=5)
    remember(p, "b", 5.0, 10.0, purchase=True, max_recent=5, max_purchases=5)
    assert p.recent[0] == ("b", 20.0, 10.0)
    assert p.purchases == ["b"]


def test_purchases_capped_most_recent_first() -> None:
    p = UserProfile("u")
    for ts, item in enumerate(["a", "b", "c"]):
        remember(p, item, float(ts), 10.0, purchase=True, max_recent=5, max_purchases=2)
    assert p.purchases == ["c", "b"]


def test_context_weights_decay_by_position() -> None:
    assert context_weights(["c", "b", "c", "a"], 0.5) == [("c", 1.0), ("b", 0.5), ("a", 0.25)]


def _event(n: int, user: str, item: str, kind: str = "view", ts: float = 0.0) -> Event:
    return Event(f"e{n}", user, item, kind, ts, ts)


def test_apply_event_builds_every_signal() -> None:
    cfg = SignalConfig.from_settings(EngineSettings())
    delta = FeatureDelta(landmark=0.0)
    profile = UserProfile("u")
    sessions: dict[str, SessionState] = {}
    for n, (item, kind) in enumerate([("a", "view"), ("b", "click"), ("c", "purchase")]):
        apply_event(delta, _event(n, "u", item, kind, ts=n * 10.0), profile, sessions, "cat", cfg)

    decay = ForwardDecay(cfg.coview_half_life_s, 0.0)
    # Pairs carry the weight of the event that completes them, both directions.
    assert delta.coview["a"]["b"] == pytest.approx(decay.weight(3.0, 10.0))
    assert delta.coview["b"]["a"] == delta.coview["a"]["b"]
    assert delta.coview["c"]["a"] == pytest.approx(decay.weight(10.0, 20.0))
    # Transitions only forwards, the second step at half weight.
    assert delta.sequence["a"]["b"] == pytest.approx(decay.weight(1.0, 10.0))
    assert delta.sequence["a"]["c"] == pytest.approx(decay.weight(0.5, 20.0))
    assert "b" not in delta.sequence.get("c", {})
    pop = ForwardDecay(cfg.popularity_half_life_s, 0.0)
    assert delta.popularity["c"] == pytest.approx(pop.weight(10.0, 20.0))
    assert delta.category_popularity["cat"]["c"] == delta.popularity["c"]
    assert profile.purchases == ["c"]
    assert [r[0] for r in profile.recent] == ["c", "b", "a"]
    assert delta.sessions["u#1"].items == ["a", "b", "c"]
    assert delta.events == 3


def test_new_session_does_not_pair_with_the_last_one() -> None:
    cfg = SignalConfig.from_settings(EngineSettings(session_gap_s=60))
    delta = FeatureDelta(landmark=0.0)
    profile = UserProfile("u")
    sessions: dict[str, SessionState] = {}
    apply_event(delta, _event(0, "u", "a", ts=0.0), profile, sessions, None, cfg)
    apply_event(delta, _event(1, "u", "b", ts=1000.0), profile, sessions, None, cfg)
    assert "b" not in delta.coview.get("a", {})
    assert set(delta.sessions) == {"u#1", "u#2"}


def test_zero_weight_type_changes_history_but_no_counts() -> None:
    cfg = SignalConfig.from_settings(
        EngineSettings(event_weights={"view": 1.0, "remove_from_cart": 0.0})
    )
    delta = FeatureDelta(landmark=0.0)
    profile = UserProfile("u")
    apply_event(delta, _event(0, "u", "a", "remove_from_cart"), profile, {}, None, cfg)
    assert not delta.popularity
    assert profile.recent[0][0] == "a"


def test_decayed_values_stay_finite_over_long_spans() -> None:
    decay = ForwardDecay(DAY, landmark=0.0)
    assert math.isfinite(decay.weight(10.0, 256 * DAY))


# -- session neighbours --------------------------------------------------------------------
def _postings(index: dict[str, list[tuple[str, float]]]) -> Callable[[str], list[Posting]]:
    return lambda item: index.get(item, [])


def test_apply_event_indexes_the_session_under_the_item_at_its_last_activity() -> None:
    cfg = SignalConfig.from_settings(EngineSettings())
    delta = FeatureDelta(landmark=0.0)
    profile = UserProfile("u")
    sessions: dict[str, SessionState] = {}
    for n, item in enumerate(["a", "b", "a"]):
        apply_event(delta, _event(n, "u", item, ts=n * 10.0), profile, sessions, None, cfg)
    # One entry per event; a revisit moves the item's entry to the later time.
    assert delta.neighbour_index == {"a": {"u#1": 20.0}, "b": {"u#1": 10.0}}


def test_query_weighs_items_by_their_latest_position() -> None:
    # [a b a c]: c is last (weight 4/4, step 1), a was seen 2 steps back (3/4), b 3 (2/4).
    assert query(["a", "b", "a", "c"]) == [
        QueryItem("c", 1.0, 1),
        QueryItem("a", 0.75, 2),
        QueryItem("b", 0.5, 3),
    ]
    assert query([]) == []


def test_select_neighbours_by_similarity_after_sampling_the_most_recent() -> None:
    index = {
        "c": [("n3", 3.0), ("n2", 2.0)],
        "b": [("n2", 2.0), ("n1", 1.0)],
        "a": [("n3", 3.0), ("n1", 1.0)],
    }
    q = query(["a", "b", "c"])  # c 1, b 2/3, a 1/3
    near = select_neighbours(q, _postings(index), sample=10, k=3, exclude=None)
    assert [(n.session_id, n.step) for n in near] == [("n2", 1), ("n3", 1), ("n1", 2)]
    assert [n.similarity for n in near] == pytest.approx([5 / 9, 4 / 9, 1 / 3])
    sampled = select_neighbours(q, _postings(index), sample=2, k=3, exclude=None)
    assert [n.session_id for n in sampled] == ["n2", "n3"], "n1 is the least recent"
    alone = select_neighbours(q, _postings(index), sample=10, k=3, exclude="n2")
    assert [n.session_id for n in alone] == ["n3", "n1"]
    assert select_neighbours(q, _postings(index), sample=10, k=0, exclude=None) == []


def test_select_neighbours_breaks_ties_by_recency_then_id() -> None:
    index = {"a": [("x", 5.0), ("z", 1.0), ("y", 1.0)]}
    near = select_neighbours(query(["a"]), _postings(index), sample=10, k=2, exclude=None)
    assert [n.session_id for n in near] == ["x", "z"]


@pytest.mark.parametrize("seed", range(20))
def test_select_neighbours_orders_as_its_definition_on_random_ties(seed: int) -> None:
    """The sorts are chains of stable sorts (and the Lua script follows the definition), so
    they are checked against the definition itself: the ``sample`` most recent by
    (recency, id), then the ``k`` nearest by (similarity, recency, id), all descending.
    Few distinct timestamps and items make ties common."""
    rng = random.Random(seed)
    index = {
        item: [
            (f"s{rng.randrange(40)}", float(rng.randrange(4))) for _ in range(rng.randrange(1, 30))
        ]
        for item in "abcdef"
    }
    current = [rng.choice("abcdef") for _ in range(rng.randrange(1, 8))]
    items = query(current)
    sample, k = rng.randrange(1, 30), rng.randrange(1, 20)
    dot: dict[str, float] = {}
    last: dict[str, float] = {}
    for q in items:
        for session, ts in index.get(q.item, []):
            dot[session] = dot.get(session, 0.0) + q.weight
            last[session] = max(last.get(session, ts), ts)
    pool = heapq.nlargest(sample, dot, key=lambda s: (last[s], s))
    n = len(items)
    expected = heapq.nlargest(k, pool, key=lambda s: (dot[s] / n, last[s], s))
    near = select_neighbours(items, _postings(index), sample=sample, k=k, exclude=None)
    assert [x.session_id for x in near] == expected


@pytest.mark.parametrize("seed", range(10))
def test_neighbour_scores_order_highest_first_then_by_item_on_random_ties(seed: int) -> None:
    rng = random.Random(seed)
    neighbours = [
        (Neighbour(f"n{i}", rng.choice((0.25, 0.5)), rng.choice((1, 2))),
         [rng.choice("abcdefgh") for _ in range(rng.randrange(1, 6))])
        for i in range(rng.randrange(1, 12))
    ]  # fmt: skip
    scored = neighbour_scores(neighbours)
    assert scored == sorted(scored, key=lambda kv: (-kv[1], kv[0]))
    assert len({item for item, _ in scored}) == len(scored)


def test_neighbour_scores_add_similarity_over_step_once_per_item() -> None:
    scored = neighbour_scores(
        [
            (Neighbour("n1", 0.5, 1), ["a", "b", "a"]),
            (Neighbour("n2", 0.4, 2), ["b", "c"]),
        ]
    )
    assert scored == [("b", pytest.approx(0.7)), ("a", 0.5), ("c", pytest.approx(0.2))]
    assert neighbour_scores([]) == []
