"""The FeatureStore contract, run against every adapter."""

from __future__ import annotations

import random

import pytest

from reco.adapters.memory_features import MemoryFeatureStore
from reco.ports import ApplyOutcome, FeatureStore
from reco.signals import FeatureDelta, SessionState, UserProfile
from tests.adapters.conftest import CAPS

pytestmark = pytest.mark.unit


def _delta(
    landmark: float = 0.0, base: dict[int, int] | None = None, **offsets: int
) -> FeatureDelta:
    d = FeatureDelta(landmark=landmark)
    d.offsets = {int(k[1:]): v for k, v in offsets.items()}
    d.base_offsets = dict(base or {})
    return d


def _inputs(store: FeatureStore, **kw: object) -> object:
    args = {
        "user_id": None,
        "session_id": None,
        "context_items": 10,
        "related_per_item": 10,
        "popular": 10,
        "category": None,
    }
    args.update(kw)
    return store.recommendation_inputs(**args)  # type: ignore[arg-type]


def test_empty_store(feature_store: FeatureStore) -> None:
    assert feature_store.applied_offsets() == {}
    assert feature_store.landmark() is None
    assert feature_store.popular(5) == []
    assert feature_store.related("x", 5).coview == []
    assert feature_store.ready()


def test_apply_adds_increments_and_keeps_offsets(feature_store: FeatureStore) -> None:
    d = _delta(p0=3)
    d.coview["a"]["b"] += 2.0
    d.sequence["a"]["b"] += 1.0
    d.popularity["a"] += 1.0
    d.category_popularity["shoes"]["a"] += 1.0
    assert feature_store.apply(d) is ApplyOutcome.APPLIED
    d2 = _delta(base={0: 3}, p0=5)
    d2.coview["a"]["b"] += 1.0
    d2.coview["a"]["c"] += 5.0
    d2.popularity["b"] += 3.0
    assert feature_store.apply(d2) is ApplyOutcome.APPLIED

    assert feature_store.applied_offsets() == {0: 5}
    assert feature_store.landmark() == 0.0
    assert feature_store.related("a", 5).coview == [("c", 5.0), ("b", 3.0)]
    assert feature_store.related("a", 5).sequence == [("b", 1.0)]
    assert feature_store.popular(5) == [("b", 3.0), ("a", 1.0)]
    assert feature_store.popular(5, "shoes") == [("a", 1.0)]
    assert feature_store.popular(5, "hats") == []


def test_lists_are_capped_keeping_the_strongest(feature_store: FeatureStore) -> None:
    d = _delta()
    for n in range(10):
        d.coview["a"][f"x{n}"] += float(n)
        d.popularity[f"x{n}"] += float(n)
    feature_store.apply(d)
    assert [i for i, _ in feature_store.related("a", 10).coview] == ["x9", "x8", "x7", "x6"]
    assert len(feature_store.popular(10)) == 4


def test_profiles_sessions_and_context(feature_store: FeatureStore) -> None:
    d = _delta()
    profile = UserProfile(
        "u", last_ts=5.0, session_id="s1", recent=[("b", 5.0, 1.0), ("a", 1.0, 1.0)]
    )
    profile.purchases = ["a"]
    d.profiles["u"] = profile
    d.sessions["s1"] = SessionState("s1", "u", ["a", "b"], 5.0)
    d.coview["b"]["c"] += 1.0
    feature_store.apply(d)

    profiles, sessions = feature_store.load_states(["u", "nobody"], [])
    assert profiles["u"].recent == profile.recent
    assert set(sessions) == {"s1"}, "the profile's current session comes along"

    by_user = _inputs(feature_store, user_id="u")
    assert by_user.context == ["b", "a"]  # type: ignore[attr-defined]
    assert by_user.purchases == ["a"]  # type: ignore[attr-defined]
    assert by_user.related["b"].coview == [("c", 1.0)]  # type: ignore[attr-defined]
    by_session = _inputs(feature_store, session_id="s1")
    assert by_session.context == ["b", "a"]  # type: ignore[attr-defined]
    assert _inputs(feature_store, user_id="nobody").context == []  # type: ignore[attr-defined]


def test_version_changes_when_the_user_changes(feature_store: FeatureStore) -> None:
    before = _inputs(feature_store, user_id="u").version  # type: ignore[attr-defined]
    d = _delta()
    d.profiles["u"] = UserProfile("u")
    feature_store.apply(d)
    after = _inputs(feature_store, user_id="u").version  # type: ignore[attr-defined]
    other = _inputs(feature_store, user_id="v").version  # type: ignore[attr-defined]
    assert after != before
    assert other == 0


def test_loaded_states_are_copies(feature_store: FeatureStore) -> None:
    d = _delta()
    d.profiles["u"] = UserProfile("u", recent=[("a", 1.0, 1.0)])
    feature_store.apply(d)
    profiles, _ = feature_store.load_states(["u"], [])
    profiles["u"].recent.clear()
    assert _inputs(feature_store, user_id="u").context == ["a"]  # type: ignore[attr-defined]


def test_dedupe_window(feature_store: FeatureStore) -> None:
    d = _delta()
    d.event_ids = ["e1", "e2"]
    feature_store.apply(d)
    assert feature_store.unseen(["e1", "e3"]) == {"e3"}


def test_oldest_sessions_are_dropped(feature_store: FeatureStore) -> None:
    for n in range(5):
        d = _delta()
        d.sessions[f"s{n}"] = SessionState(f"s{n}", "u", ["a"], float(n))
        feature_store.apply(d)
    _, sessions = feature_store.load_states([], [f"s{n}" for n in range(5)])
    assert set(sessions) == {"s2", "s3", "s4"}


def test_rescale_multiplies_values_and_moves_landmark(feature_store: FeatureStore) -> None:
    d = _delta()
    d.coview["a"]["b"] += 8.0
    d.popularity["a"] += 4.0
    feature_store.apply(d)
    feature_store.rescale(100.0, 0.5, 0.25)
    assert feature_store.landmark() == 100.0
    assert feature_store.related("a", 1).coview == [("b", 4.0)]
    assert feature_store.popular(1) == [("a", 1.0)]
    stale = _delta(landmark=0.0, p0=1)
    stale.popularity["a"] += 8.0
    assert feature_store.apply(stale) is ApplyOutcome.OTHER_LANDMARK
    assert feature_store.applied_offsets() == {}, "a refused batch writes nothing"
    assert feature_store.popular(1) == [("a", 1.0)]


def test_a_rescale_from_a_landmark_moved_since_is_a_no_op(feature_store: FeatureStore) -> None:
    """Two processors that both decide to move the landmark move it once: the second one's
    factors are relative to a landmark the store no longer holds."""
    d = _delta()
    d.popularity["a"] += 8.0
    feature_store.apply(d)
    feature_store.rescale(100.0, 0.5, 0.5, from_landmark=0.0)
    feature_store.rescale(120.0, 0.25, 0.25, from_landmark=0.0)
    assert feature_store.landmark() == 100.0
    assert feature_store.popular(1) == [("a", 4.0)]


def test_snapshot_is_canonical(feature_store: FeatureStore) -> None:
    d = _delta(p0=1)
    d.coview["b"]["a"] += 1.0
    d.coview["a"]["b"] += 1.0
    feature_store.apply(d)
    snap = feature_store.snapshot()
    assert list(snap["coview"]) == ["a", "b"]
    assert snap["offsets"] == {0: 1}


def test_reset_forgets_everything(feature_store: FeatureStore) -> None:
    d = _delta(p0=7)
    d.coview["a"]["b"] += 1.0
    d.popularity["a"] += 1.0
    d.profiles["u"] = UserProfile("u", recent=[("a", 1.0, 1.0)])
    d.event_ids = ["e1"]
    feature_store.apply(d)
    feature_store.reset()
    assert feature_store.applied_offsets() == {}
    assert feature_store.landmark() is None
    assert feature_store.popular(5) == []
    assert feature_store.related("a", 5).coview == []
    assert feature_store.unseen(["e1"]) == {"e1"}
    assert _inputs(feature_store, user_id="u").context == []  # type: ignore[attr-defined]


def test_apply_is_a_compare_and_set_on_offsets(feature_store: FeatureStore) -> None:
    first = _delta(p0=10, p1=4)
    first.popularity["a"] += 1.0
    assert feature_store.apply(first) is ApplyOutcome.APPLIED

    again = _delta(p0=10)  # a batch replayed by a writer that believes nothing is applied
    again.popularity["a"] += 1.0
    assert feature_store.apply(again) is ApplyOutcome.STALE
    behind = _delta(base={0: 6}, p0=8)  # a stalled writer whose partition moved on
    behind.popularity["a"] += 1.0
    assert feature_store.apply(behind) is ApplyOutcome.STALE
    lost = _delta(base={2: 3}, p2=5)  # expects state the store does not have
    lost.popularity["a"] += 1.0
    assert feature_store.apply(lost) is ApplyOutcome.RESET
    mixed = _delta(base={0: 10, 1: 6}, p0=12, p1=9)  # one partition off: all refused
    mixed.popularity["a"] += 1.0
    assert feature_store.apply(mixed) is ApplyOutcome.RESET
    assert feature_store.popular(1) == [("a", 1.0)], "refused batches wrote nothing"
    assert feature_store.applied_offsets() == {0: 10, 1: 4}

    onward = _delta(base={0: 10}, p0=12, p3=1)  # p3: first batch of a new partition
    onward.popularity["a"] += 1.0
    assert feature_store.apply(onward) is ApplyOutcome.APPLIED
    assert feature_store.applied_offsets() == {0: 12, 1: 4, 3: 1}
    assert feature_store.popular(1) == [("a", 2.0)]


def test_experiment_counters_move_with_the_offsets(feature_store: FeatureStore) -> None:
    """Impressions and attributed events are counted once: a replayed batch, refused by
    the offsets' compare-and-set, adds nothing; a reset forgets them with the features."""
    assert feature_store.experiment_counts() == {}
    first = _delta(p0=4)
    first.experiments["ab/control/impressions"] += 3
    first.experiments["ab/control/click"] += 1
    first.experiments["ab/engine/impressions"] += 2
    assert feature_store.apply(first) is ApplyOutcome.APPLIED
    replayed = _delta(p0=4)
    replayed.experiments["ab/control/impressions"] += 3
    assert feature_store.apply(replayed) is ApplyOutcome.STALE
    onward = _delta(base={0: 4}, p0=6)
    onward.experiments["ab/engine/click"] += 2
    onward.experiments["ab/control/impressions"] += 1
    assert feature_store.apply(onward) is ApplyOutcome.APPLIED
    expected = {
        "ab/control/click": 1,
        "ab/control/impressions": 4,
        "ab/engine/click": 2,
        "ab/engine/impressions": 2,
    }
    assert feature_store.experiment_counts() == expected
    assert feature_store.snapshot()["experiments"] == expected
    feature_store.reset()
    assert feature_store.experiment_counts() == {}


# -- session neighbours ------------------------------------------------------------------
def _index(d: FeatureDelta) -> FeatureDelta:
    """Index every item of the delta's sessions at the session's last activity, as
    ``apply_event`` leaves it for sessions whose events all came in this batch."""
    for sid, state in d.sessions.items():
        for item in state.items:
            d.neighbour_index[item][sid] = state.last_ts
    return d


def _neighbour_sessions(store: FeatureStore) -> None:
    """n1 [a b x] at 1, n2 [b c] at 2, n3 [c y a] at 3: the case the tests work by hand."""
    d = _delta()
    d.sessions["n1"] = SessionState("n1", "u1", ["a", "b", "x"], 1.0)
    d.sessions["n2"] = SessionState("n2", "u2", ["b", "c"], 2.0)
    d.sessions["n3"] = SessionState("n3", "u3", ["c", "y", "a"], 3.0)
    store.apply(_index(d))


def test_neighbour_index_lists_each_session_under_its_items(feature_store: FeatureStore) -> None:
    _neighbour_sessions(feature_store)
    index = feature_store.snapshot()["neighbour_index"]
    assert index["a"] == {"n1": 1.0, "n3": 3.0}
    assert index["c"] == {"n2": 2.0, "n3": 3.0}
    d = _delta()
    d.sessions["n1"] = SessionState("n1", "u1", ["a", "b", "x", "a"], 7.0)
    d.neighbour_index["a"]["n1"] = 7.0
    feature_store.apply(d)
    index = feature_store.snapshot()["neighbour_index"]
    assert index["a"] == {"n1": 7.0, "n3": 3.0}, "a later entry replaces the earlier"
    assert index["b"] == {"n1": 1.0, "n2": 2.0}


def test_neighbour_index_is_capped_keeping_the_most_recent(feature_store: FeatureStore) -> None:
    d = _delta()
    for n in range(5):
        d.sessions[f"s{n}"] = SessionState(f"s{n}", "u", ["a"], float(n))
    feature_store.apply(_index(d))
    assert feature_store.snapshot()["neighbour_index"]["a"] == {"s2": 2.0, "s3": 3.0, "s4": 4.0}


def test_neighbours_score_the_nearest_sessions_items(feature_store: FeatureStore) -> None:
    _neighbour_sessions(feature_store)
    # Query [a b c]: c weighs 1, b 2/3, a 1/3. Dot products: n2 (c, b) 5/3, n3 (c, a)
    # 4/3, n1 (b, a) 1; over 3 distinct items. n1 matched from b at 2 steps back: halved.
    near = feature_store.neighbours(["a", "b", "c"], exclude=None, sample=10, k=2)
    assert near == [
        ("c", pytest.approx(1.0)),
        ("b", pytest.approx(5 / 9)),
        ("a", pytest.approx(4 / 9)),
        ("y", pytest.approx(4 / 9)),
    ]
    everyone = dict(feature_store.neighbours(["a", "b", "c"], exclude=None, sample=10, k=3))
    assert everyone["x"] == pytest.approx(1 / 6)
    assert everyone["b"] == pytest.approx(5 / 9 + 1 / 6)
    # The sample keeps the most recent candidates (n3, n2) before similarity is looked at.
    assert feature_store.neighbours(["a", "b", "c"], exclude=None, sample=2, k=3) == near
    without_n2 = dict(feature_store.neighbours(["a", "b", "c"], exclude="n2", sample=10, k=2))
    assert set(without_n2) == {"a", "b", "c", "x", "y"}
    assert feature_store.neighbours(["nothing"], exclude=None, sample=10, k=2) == []
    assert feature_store.neighbours([], exclude=None, sample=10, k=2) == []


def test_recommendation_inputs_carry_neighbours_when_asked(feature_store: FeatureStore) -> None:
    _neighbour_sessions(feature_store)
    d = _delta()
    d.profiles["u"] = UserProfile("u", recent=[("c", 5.0, 1.0), ("b", 4.0, 1.0), ("a", 3.0, 1.0)])
    feature_store.apply(d)
    asked = _inputs(feature_store, user_id="u", neighbour_sample=10, neighbour_k=2)
    assert asked.neighbours == feature_store.neighbours(  # type: ignore[attr-defined]
        ["a", "b", "c"], exclude=None, sample=10, k=2
    )
    assert [i for i, _ in asked.neighbours] == ["c", "b", "a", "y"]  # type: ignore[attr-defined]
    assert _inputs(feature_store, user_id="u").neighbours == []  # type: ignore[attr-defined]
    # By session: the session itself is never its own neighbour.
    by_session = _inputs(feature_store, session_id="n3", neighbour_sample=10, neighbour_k=5)
    expected = feature_store.neighbours(["c", "y", "a"], exclude="n3", sample=10, k=5)
    assert by_session.neighbours == expected  # type: ignore[attr-defined]
    assert expected


def test_neighbours_equal_the_in_memory_stores(feature_store: FeatureStore) -> None:
    """Many ties (shared timestamps, equal similarities), cuts by sample and k, dropped
    sessions, non-ASCII ids: every store must choose and sum exactly as the in-memory one."""
    reference = MemoryFeatureStore(**CAPS)
    rng = random.Random(7)
    items = ["a", "b", "c", "d", "é", "ü1", "Z"]
    for batch in range(12):
        d = _delta()
        for n in range(4):
            sid = rng.choice(["s", "ß", "S"]) + str(batch * 4 + n)
            # The last batch's sessions outlive the cap of 3: recent and long, so queries reach
            # them; the earlier ones are dropped but still indexed.
            picked = [rng.choice(items) for _ in range(rng.randint(1, 5 if batch < 11 else 9))]
            last_ts = float(rng.randint(0, 3)) if batch < 11 else 10.0 + n % 2
            d.sessions[sid] = SessionState(sid, "u", picked, last_ts)
        _index(d)
        assert feature_store.apply(d) is reference.apply(d) is ApplyOutcome.APPLIED
    assert feature_store.snapshot()["neighbour_index"] == reference.snapshot()["neighbour_index"]
    found = 0
    for _ in range(30):
        query = [rng.choice(items) for _ in range(rng.randint(1, 6))]
        sample, k = rng.randint(1, 8), rng.randint(1, 5)
        exclude = rng.choice([None, "s44", "ß45"])
        got = feature_store.neighbours(query, exclude=exclude, sample=sample, k=k)
        assert got == reference.neighbours(query, exclude=exclude, sample=sample, k=k)
        found += bool(got)
    assert found > 10


def test_the_neighbour_query_is_the_context_items_most_recent(
    feature_store: FeatureStore,
) -> None:
    """A long session is matched on its ``context_items`` latest items only: a session that
    shares only its older items is no neighbour."""
    d = _delta()
    d.sessions["old-match"] = SessionState("old-match", "v", ["o1", "o2", "x"], 1.0)
    d.sessions["new-match"] = SessionState("new-match", "w", ["n1", "y"], 2.0)
    d.neighbour_index = {
        "o1": {"old-match": 1.0},
        "o2": {"old-match": 1.0},
        "n1": {"new-match": 2.0},
    }
    d.sessions["long"] = SessionState("long", "u", ["o1", "o2", "m1", "m2", "n1"], 3.0)
    feature_store.apply(d)
    inputs = _inputs(
        feature_store, session_id="long", context_items=2, neighbour_sample=10, neighbour_k=5
    )
    assert {i for i, _ in inputs.neighbours} == {"n1", "y"}  # type: ignore[attr-defined]
    everything = _inputs(
        feature_store, session_id="long", context_items=5, neighbour_sample=10, neighbour_k=5
    )
    assert {"x", "y"} <= {i for i, _ in everything.neighbours}  # type: ignore[attr-defined]


def test_recent_weights_keep_the_two_buckets_read_in_a_ring(feature_store: FeatureStore) -> None:
    """Each time bucket's recent weights go to its ring slot (``reco.signals.trend``): a
    newer bucket empties the slot, an older one than the slot holds is dropped, and a
    read sees a bucket only while its slot holds it; a landmark move leaves them alone."""
    d = _delta(p0=1)
    d.recent[10]["a"] += 2.0
    d.recent[10]["b"] += 1.0
    d.recent[11]["b"] += 3.0
    assert feature_store.apply(d) is ApplyOutcome.APPLIED
    got = _inputs(feature_store, recent_bucket=11)
    assert got.recent == [("b", 3.0)]  # type: ignore[attr-defined]
    assert got.recent_before == [("a", 2.0), ("b", 1.0)]  # type: ignore[attr-defined]
    assert _inputs(feature_store).recent == []  # type: ignore[attr-defined]

    # Bucket 13 takes bucket 10's slot (13 % 3 == 10 % 3); 9 is older than its slot's 12.
    later = _delta(base={0: 1}, p0=2)
    later.recent[9]["z"] += 5.0
    later.recent[12]["c"] += 1.0
    later.recent[13]["c"] += 4.0
    later.recent[13]["a"] += 1.0
    assert feature_store.apply(later) is ApplyOutcome.APPLIED
    feature_store.rescale(100.0, 0.5, 0.5)
    got = _inputs(feature_store, recent_bucket=13)
    assert got.recent == [("c", 4.0), ("a", 1.0)]  # type: ignore[attr-defined]
    assert got.recent_before == [("c", 1.0)]  # type: ignore[attr-defined]
    stale = _inputs(feature_store, recent_bucket=11)
    assert stale.recent == [("b", 3.0)], "bucket 11 still holds its slot"  # type: ignore[attr-defined]
    assert stale.recent_before == [], "bucket 10's slot holds 13 now"  # type: ignore[attr-defined]
    assert feature_store.snapshot()["recent"] == {
        11: {"b": 3.0},
        12: {"c": 1.0},
        13: {"a": 1.0, "c": 4.0},
    }
    feature_store.reset()
    assert _inputs(feature_store, recent_bucket=13).recent == []  # type: ignore[attr-defined]


def test_recent_weights_are_capped_like_popularity(feature_store: FeatureStore) -> None:
    d = _delta()
    for n in range(10):
        d.recent[5][f"x{n}"] += float(n + 1)
    feature_store.apply(d)
    got = _inputs(feature_store, recent_bucket=5, popular=10)
    assert [i for i, _ in got.recent] == ["x9", "x8", "x7", "x6"]  # type: ignore[attr-defined]
