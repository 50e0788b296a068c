"""tools/tune.py's inner splits: choosing sees the outer training part and nothing else."""

from __future__ import annotations

import pytest
from tools.tune import inner_next_splits, inner_user_data

from reco.events import Event

pytestmark = pytest.mark.unit

DAY = 86400.0


def ev(session: str, item: str, ts: float, user: str | None = None) -> Event:
    return Event(f"{session}-{ts}", user or f"u{session}", item, "view", ts, ts, session)


def days_of_sessions(days: int) -> list[Event]:
    """Session ``d<n>`` on day n: three views an hour apart, on items shared across days."""
    out = []
    for day in range(days):
        start = day * DAY + 8 * 3600
        out += [ev(f"d{day}", f"i{(day + k) % 7}", start + k * 3600) for k in range(3)]
    return out


def test_inner_folds_hold_only_outer_training_sessions() -> None:
    events = days_of_sessions(40)
    # A session that starts before the outer cut-off and ends after it belongs, whole, to
    # the outer test part: its early events must not reach any inner part either.
    events += [ev("across", "i1", 31.5 * DAY), ev("across", "i2", 33.5 * DAY)]
    events.sort(key=lambda e: e.timestamp)
    last = max(e.timestamp for e in events)
    outer_test = {"across"} | {f"d{d}" for d in range(40) if d * DAY + 10 * 3600 > last - 7 * DAY}
    assert outer_test == {"across", "d33", "d34", "d35", "d36", "d37", "d38", "d39"}

    folds = inner_next_splits(events, outer_days=7, inner_days=7, folds=3)

    assert len(folds) == 3
    tested: list[set[str]] = []
    for inner_train, inner_test in folds:
        train_ids = {e.session_id for e in inner_train}
        test_ids = {e.session_id for e in inner_test}
        assert test_ids, "every fold tests some sessions"
        assert not (train_ids | test_ids) & outer_test
        assert not train_ids & test_ids
        # The inner test part lies strictly inside the outer training part, in time too.
        assert max(e.timestamp for e in inner_test) <= last - 7 * DAY
        assert max(e.timestamp for e in inner_train) < min(e.timestamp for e in inner_test)
        tested.append({s for s in test_ids if s is not None})
    # Fold 0 is the training part's own last 7 days; each later fold lies before the last.
    assert tested[0] == {f"d{d}" for d in range(26, 33)}
    assert tested[1] == {f"d{d}" for d in range(19, 26)}
    assert tested[2] == {f"d{d}" for d in range(12, 19)}


def test_inner_user_target_is_the_second_to_last_event() -> None:
    rows = [("a", "p", 1), ("a", "q", 2), ("a", "r", 3), ("a", "s", 4)]
    rows += [("b", "r", 1), ("b", "q", 2), ("b", "p", 3), ("b", "s", 5)]
    rows += [("c", "q", 6), ("c", "p", 8), ("c", "r", 9), ("d", "s", 2)]
    events = sorted(
        (ev(f"s{user}", item, float(ts), user=user) for user, item, ts in rows),
        key=lambda e: e.timestamp,
    )

    inner = inner_user_data(events)

    targets = {e.user_id: (e.item_id, e.timestamp) for e in inner.targets}
    assert targets == {"a": ("r", 3.0), "b": ("p", 3.0), "c": ("p", 8.0)}
    outer_targets = {("a", 4.0), ("b", 5.0), ("c", 9.0), ("d", 2.0)}
    assert not {(e.user_id, e.timestamp) for e in inner.train} & outer_targets
    assert inner.rated["c"] == frozenset({"q"})
