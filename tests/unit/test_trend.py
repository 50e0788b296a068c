"""The recent weights' window (``reco.signals.trend``) and how the processor folds them."""

from __future__ import annotations

import pytest

from reco.events import Event
from reco.settings import EngineSettings
from reco.signals import FeatureDelta, SignalConfig, UserProfile, apply_event
from reco.signals.trend import RING, bucket_of, ring_writes, sliding, slot_of

pytestmark = pytest.mark.unit


def test_buckets_and_slots() -> None:
    assert bucket_of(7199.9, 3600) == 1
    assert bucket_of(7200.0, 3600) == 2
    assert {slot_of(b) for b in range(10, 10 + RING)} == set(range(RING))
    assert ring_writes({12: {"a": 1.0}, 10: {"b": 2.0}}) == [
        (10, slot_of(10), {"b": 2.0}),
        (12, slot_of(12), {"a": 1.0}),
    ]


def test_the_sliding_window_counts_the_part_of_the_previous_bucket_inside_it() -> None:
    current, previous = [("a", 2.0)], [("a", 4.0), ("b", 8.0)]
    # A quarter into bucket 1: three quarters of bucket 0 are still in the window.
    got = sliding(current, previous, now=3600 + 900, window_s=3600)
    assert got == {"a": pytest.approx(2.0 + 3.0), "b": pytest.approx(6.0)}
    assert sliding(current, previous, now=3600.0, window_s=3600) == {
        "a": pytest.approx(6.0),
        "b": pytest.approx(8.0),
    }


def test_each_weighted_event_adds_its_weight_to_its_bucket_undecayed() -> None:
    cfg = SignalConfig.from_settings(EngineSettings(trend_window_s=100.0))
    delta = FeatureDelta(landmark=0.0)
    profile = UserProfile("u")
    events = ((10.0, "view"), (150.0, "purchase"), (160.0, "view"))
    for n, (ts, kind) in enumerate(events):
        apply_event(delta, Event(f"e{n}", "u", "i", kind, ts, ts), profile, {}, None, cfg)
    weights = cfg.event_weights
    assert dict(delta.recent[0]) == {"i": weights["view"]}
    assert dict(delta.recent[1]) == {"i": weights["purchase"] + weights["view"]}
