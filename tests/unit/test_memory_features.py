"""The memory store's popularity rankings, kept in step by writes, against a full sort."""

from __future__ import annotations

import random

import pytest

from reco.adapters.memory_features import MemoryFeatureStore
from reco.ports import ApplyOutcome, Scored
from reco.signals import FeatureDelta

pytestmark = pytest.mark.unit

CATEGORIES = ("shoes", "hats", "bags")


def _brute_force(values: dict[str, float], limit: int) -> Scored:
    return sorted(values.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:limit]


def _check(store: MemoryFeatureStore, limits: tuple[int, ...]) -> None:
    snapshot = store.snapshot()
    for limit in limits:
        assert store.popular(limit) == _brute_force(snapshot["popularity"], limit)
        for category in CATEGORIES:
            expected = _brute_force(snapshot["category_popularity"].get(category, {}), limit)
            assert store.popular(limit, category) == expected, (limit, category)


def _random_delta(rng: random.Random, landmark: float, offset: int) -> FeatureDelta:
    delta = FeatureDelta(landmark=landmark)
    delta.offsets = {0: offset + 1}
    delta.base_offsets = {0: offset}
    for _ in range(rng.randint(1, 6)):
        item = f"i{rng.randrange(40)}"
        # Whole and half values tie often; a third ties rarely, and only by rounding.
        value = rng.choice((1.0, 2.0, 0.5, 1 / 3))
        delta.popularity[item] += value
        if rng.random() < 0.8:
            delta.category_popularity[rng.choice(CATEGORIES)][item] += value
    return delta


@pytest.mark.parametrize("seed", range(5))
def test_popular_equals_a_full_sort_through_applies_trims_and_rescales(seed: int) -> None:
    rng = random.Random(seed)
    # A cap well under the 40 items, so that the tables are trimmed while ranked.
    store = MemoryFeatureStore(max_popular=8)
    first = FeatureDelta(landmark=0.0)
    first.offsets = {0: 1}
    assert store.apply(first) is ApplyOutcome.APPLIED
    landmark, offset = 0.0, 1
    for step in range(300):
        assert store.apply(_random_delta(rng, landmark, offset)) is ApplyOutcome.APPLIED
        offset += 1
        if step % 50 == 49:
            landmark += 1.0
            store.rescale(landmark, 1.0, rng.choice((0.1, 0.3, 0.7)))
        if rng.random() < 0.5:
            _check(store, (1, 3, 8, 20))
    _check(store, (0, 1, 5, 10, 100))


def test_a_store_read_while_written_equals_one_read_only_at_the_end() -> None:
    rng = random.Random(42)
    read, unread = MemoryFeatureStore(max_popular=8), MemoryFeatureStore(max_popular=8)
    for offset in range(200):
        delta = _random_delta(rng, 0.0, offset)
        if offset == 0:
            delta.base_offsets = {}
        for store in (read, unread):
            assert store.apply(delta) is ApplyOutcome.APPLIED
        read.popular(5)
        read.popular(5, "shoes")
    assert read.snapshot() == unread.snapshot()
    for category in (None, *CATEGORIES):
        assert read.popular(20, category) == unread.popular(20, category)
