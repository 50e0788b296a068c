"""The api's reads of the Redis feature store: bounded, pipelined, and cached per process.

A recommendation reads a few keys of bounded size, in three pipelined round trips, and does
all searching and scoring in the api process, which scales with replicas, where Redis runs
one command at a time for every replica together:

1. the subject's state and version (a session's or a user's hash) and the landmark;
2. per context item its co-view and sequence lists (``related_per_item`` each) and, for the
   session-neighbour query, its index list (``neighbour_sessions_per_item``); the popular list;
3. the items of the ``k`` nearest sessions, chosen here (:mod:`reco.signals.neighbours`)
   from the index lists of step 2.

Item-level lists (steps 1 to 3, except the subject itself) go through :class:`ListCache`, a
per-process read-through cache with a TTL of at most a second: other shoppers' activity
shows in a response at most that much later. The subject's own state is never cached, and
when its version moved since this process last served it (the subject's own event was
applied), the lists of its context items are read afresh, bypassing the cache, so that a
shopper's own event shows in full in the next response: the processor writes the state and
the lists in one atomic script, so the new version implies the new lists.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Final

from cachetools import LRUCache, TTLCache

MAX_TTL_S: Final = 1.0
"""The freshness bound of cached lists: a longer TTL is refused."""

_ABSENT: Final = object()


class ListCache:
    """A bounded TTL cache shared by the threads of one process; off when ``size`` or
    ``ttl_s`` is 0. Entries are not refreshed by reads: the TTL runs from the fetch, so a hot
    list is re-read every ``ttl_s`` and the freshness bound holds for it too."""

    def __init__(
        self,
        size: int,
        ttl_s: float,
        *,
        subjects: int = 100_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """``subjects``: how many users' and sessions' last versions are remembered."""
        if ttl_s > MAX_TTL_S:
            raise ValueError(f"list cache TTL {ttl_s} s is over the {MAX_TTL_S} s bound")
        self.enabled = size > 0 and ttl_s > 0
        self._lists: TTLCache[Hashable, Any] = TTLCache(max(size, 1), max(ttl_s, 1e-9), timer=timer)
        self._versions: LRUCache[Hashable, int] = LRUCache(max(subjects, 1))
        self._landmark: str | None = None
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[Hashable]) -> dict[Any, Any]:
        """The cached values among ``keys``."""
        if not self.enabled:
            return {}
        found: dict[Any, Any] = {}
        with self._lock:
            for key in keys:
                value = self._lists.get(key, _ABSENT)
                if value is not _ABSENT:
                    found[key] = value
        return found

    def put_many(self, values: Mapping[Any, Any]) -> None:
        if self.enabled and values:
            with self._lock:
                for key, value in values.items():
                    self._lists[key] = value

    def moved(self, subject: Hashable, version: int) -> bool:
        """Whether ``subject``'s version differs from the one this process saw last (or it
        was not seen yet), remembering ``version``: its context lists must be read afresh."""
        if not self.enabled:
            return True
        with self._lock:
            last = self._versions.get(subject)
            self._versions[subject] = version
        return last != version

    def at_landmark(self, landmark: str | None) -> bool:
        """Empty the cache when the store's decay landmark moved, and say so: cached scores
        are relative to the landmark they were read under (a rescale, once in years, rewrites
        them all). The first landmark seen empties it too."""
        with self._lock:
            if landmark == self._landmark:
                return False
            self._landmark = landmark
            self._lists.clear()
            return True

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()
            self._versions.clear()
