"""The api's per-process cache of item lists read from Redis (``reco.adapters.redis_reads``):
what it adds to ``ExpiringCache`` (tests/unit/test_expiring_cache.py)."""

from __future__ import annotations

import pytest

from reco.adapters.redis_reads import ListCache

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_ttl_over_the_freshness_bound_is_refused() -> None:
    with pytest.raises(ValueError, match=r"over the 1\.0 s bound"):
        ListCache(10, 1.5)


def test_off_when_size_or_ttl_is_zero() -> None:
    for cache in (ListCache(0, 0.5), ListCache(10, 0)):
        cache.put_many({"a": 1})
        assert cache.get_many(["a"]) == {}
        assert cache.moved(("u", "x"), 1), "without a cache every read is fresh"


def test_a_subjects_version_move_is_noticed_once() -> None:
    cache = ListCache(10, 1.0, timer=Clock())
    assert cache.moved(("u", "x"), 3), "not seen yet: read afresh"
    assert not cache.moved(("u", "x"), 3)
    assert cache.moved(("u", "x"), 4)
    assert not cache.moved(("u", "x"), 4)
    assert cache.moved(("s", "x"), 4), "a session and a user of one id are apart"


def test_a_new_landmark_empties_the_cache() -> None:
    cache = ListCache(10, 1.0, timer=Clock())
    assert cache.at_landmark("100")
    cache.put_many({"a": 1})
    assert not cache.at_landmark("100")
    assert cache.get_many(["a"]) == {"a": 1}
    assert cache.at_landmark("200")
    assert cache.get_many(["a"]) == {}
