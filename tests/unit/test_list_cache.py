"""The api's per-process cache of item lists read from Redis (``reco.adapters.redis_reads``)."""

from __future__ import annotations

import threading

import pytest

from reco.adapters.redis_reads import ListCache

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_served_until_its_ttl_from_the_fetch_and_not_after() -> None:
    clock = Clock()
    cache = ListCache(10, 0.5, timer=clock)
    cache.put_many({"a": [("x", 1.0)]})
    clock.now = 0.4
    assert cache.get_many(["a", "b"]) == {"a": [("x", 1.0)]}, "reads do not extend the TTL"
    clock.now = 0.51
    assert cache.get_many(["a"]) == {}


def test_the_size_bounds_the_entries_and_the_oldest_fetch_goes_first() -> None:
    clock = Clock()
    cache = ListCache(2, 1.0, timer=clock)
    cache.put_many({"a": 1, "b": 2, "c": 3})
    assert cache.get_many(["a", "b", "c"]) == {"b": 2, "c": 3}
    clock.now = 0.1
    cache.put_many({"b": 20})  # fetched again: now the newest
    cache.put_many({"d": 4})
    assert cache.get_many(["b", "c", "d"]) == {"b": 20, "d": 4}


def test_expired_entries_are_dropped_when_lists_are_put() -> None:
    clock = Clock()
    cache = ListCache(10, 0.5, timer=clock)
    cache.put_many({"a": 1, "b": 2})
    clock.now = 0.3
    cache.put_many({"c": 3})
    clock.now = 0.6
    cache.put_many({"d": 4})
    assert list(cache._lists) == ["c", "d"], "a and b expired and hold no memory"
    assert cache.get_many(["a", "b", "c", "d"]) == {"c": 3, "d": 4}


def test_threads_reading_while_others_put_see_whole_entries() -> None:
    cache = ListCache(50, 1.0)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        for round_ in range(2000):
            cache.put_many({f"k{(n + round_) % 80}": (n, round_, [n] * 3)})

    def read() -> None:
        try:
            for _ in range(2000):
                for value in cache.get_many(f"k{i}" for i in range(80)).values():
                    n, _round, items = value
                    assert items == [n] * 3
        except AssertionError as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache.get_many(f"k{i}" for i in range(80))) <= 50


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
