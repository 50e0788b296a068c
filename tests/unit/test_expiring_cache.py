"""The bounded TTL cache of the api's Redis lists and catalog entries
(``reco.adapters.expiring``)."""

from __future__ import annotations

import threading

import pytest

from reco.adapters.expiring import ExpiringCache

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_served_until_its_ttl_from_the_fetch_and_not_after() -> None:
    clock = Clock()
    cache = ExpiringCache(10, 0.5, timer=clock)
    cache.put_many({"a": [("x", 1.0)]})
    clock.now = 0.4
    assert cache.get_many(["a", "b"]) == {"a": [("x", 1.0)]}, "reads do not extend the TTL"
    clock.now = 0.51
    assert cache.get_many(["a"]) == {}


def test_the_size_bounds_the_entries_and_the_oldest_fetch_goes_first() -> None:
    clock = Clock()
    cache = ExpiringCache(2, 1.0, timer=clock)
    cache.put_many({"a": 1, "b": 2, "c": 3})
    assert cache.get_many(["a", "b", "c"]) == {"b": 2, "c": 3}
    clock.now = 0.1
    cache.put_many({"b": 20})  # fetched again: now the newest
    cache.put_many({"d": 4})
    assert cache.get_many(["b", "c", "d"]) == {"b": 20, "d": 4}


def test_expired_entries_are_dropped_when_lists_are_put() -> None:
    clock = Clock()
    cache = ExpiringCache(10, 0.5, timer=clock)
    cache.put_many({"a": 1, "b": 2})
    clock.now = 0.3
    cache.put_many({"c": 3})
    clock.now = 0.6
    cache.put_many({"d": 4})
    assert list(cache._entries) == ["c", "d"], "a and b expired and hold no memory"
    assert cache.get_many(["a", "b", "c", "d"]) == {"c": 3, "d": 4}


def test_threads_reading_while_others_put_see_whole_entries() -> None:
    cache = ExpiringCache(50, 1.0)
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


def test_a_value_read_before_a_newer_put_does_not_replace_it() -> None:
    """The catalog caches what it fetched with ``replace=False``: an upsert of the same
    process that landed during the read holds the newer value."""
    clock = Clock()
    cache: ExpiringCache[str, int | None] = ExpiringCache(10, 1.0, timer=clock)
    cache.put_many({"a": 2})
    cache.put_many({"a": 1, "b": None}, replace=False)
    assert cache.get_many(["a", "b", "c"]) == {"a": 2, "b": None}, "None is a cached value"
    clock.now = 1.5
    cache.put_many({"a": 1}, replace=False)
    assert cache.get_many(["a"]) == {"a": 1}, "an expired entry is replaced"


def test_off_when_size_or_ttl_is_zero() -> None:
    for cache in (ExpiringCache[str, int](0, 0.5), ExpiringCache[str, int](10, 0)):
        cache.put_many({"a": 1})
        assert cache.get_many(["a"]) == {}
