"""Response cache keyed by request and feature version: a user's event changes the version,
so the very next request for that user is computed afresh; the TTL bounds how long changes
elsewhere (other users' co-views, popularity) take to show."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")


class ResponseCache(Generic[V]):
    def __init__(self, size: int, ttl_s: float) -> None:
        self._enabled = size > 0 and ttl_s > 0
        self._cache: TTLCache[Hashable, tuple[int, V]] = TTLCache(max(size, 1), max(ttl_s, 1e-9))
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: int) -> V | None:
        if not self._enabled:
            return None
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or hit[0] != version:
            return None
        return hit[1]

    def put(self, key: Hashable, version: int, value: V) -> None:
        if self._enabled:
            with self._lock:
                self._cache[key] = (version, value)
