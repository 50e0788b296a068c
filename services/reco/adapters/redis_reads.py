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

:class:`RedisReads` holds these reads for both stores: it takes every key name from a key
layout (:mod:`reco.adapters.redis_keys`), and its pipelines are a Cluster's when its client
is one (redis-py splits them per node, so a round trip is one per node, in parallel). On a
Cluster the state and the lists are written by one script per slot group, not one in all:
a reader may see a new version a moment (one pipeline's time) before the lists of the same
batch, and then cache the lists it read for up to the TTL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, cast

import orjson
import redis
from cachetools import LRUCache
from redis.client import Pipeline
from redis.cluster import ClusterPipeline
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)

from reco.adapters.expiring import ExpiringCache
from reco.adapters.redis_keys import (
    CATEGORY_POPULAR,
    COVIEW,
    NEIGHBOURS,
    PROFILE_FIELD,
    SEQUENCE,
    STATE_FIELD,
    USER,
    VERSION_FIELD,
    KeyLayout,
)
from reco.exceptions import BackendTimeout, BackendUnavailable
from reco.ports import RecoInputs, Related, Scored
from reco.signals import SessionState, UserProfile
from reco.signals.neighbours import neighbour_scores, query, select_neighbours
from reco.signals.trend import slot_of

logger = logging.getLogger(__name__)

MAX_TTL_S: Final = 1.0
"""The freshness bound of cached lists: a longer TTL is refused."""

# Keys per SCAN page and per UNLINK: large enough to make few round trips, small enough
# that no single command holds Redis for long.
PAGE: Final = 1000

# What "Redis cannot serve now" looks like, beyond a timeout. ClusterDownError covers
# CLUSTERDOWN and MASTERDOWN; TRYAGAIN comes during a resharding.
_UNAVAILABLE: Final = (
    redis.ConnectionError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)

Client = redis.Redis | redis.RedisCluster
"""A client of one Redis or of a Cluster, decoding replies to ``str``."""


class ListCache(ExpiringCache[Hashable, Any]):
    """The lists' cache (``reco.adapters.expiring``), its TTL bounded by ``MAX_TTL_S``, with
    the subjects' last versions seen and the decay landmark the lists were read under.
    (cachetools' ``TTLCache`` here cost ~10 % of a recommendation's CPU at a hundred lists a
    request.)"""

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
        super().__init__(size, ttl_s, timer=timer)
        self._versions: LRUCache[Hashable, int] = LRUCache(max(subjects, 1))
        self._landmark: str | None = None

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
            self._entries.clear()
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._versions.clear()


class RedisReads:
    """The reads of a Redis feature store, on one Redis or on a Cluster; see the module
    docstring. The stores add the processor's side (:mod:`reco.adapters.redis_features`,
    :mod:`reco.adapters.redis_cluster`)."""

    def __init__(
        self,
        client: Client,
        *,
        keys: KeyLayout,
        where: str,
        neighbour_sessions_per_item: int,
        list_cache_size: int,
        list_cache_ttl_s: float,
    ) -> None:
        self._client = client
        self._keys = keys
        self._where = where
        self._neighbours_per_item = neighbour_sessions_per_item
        self._cache = ListCache(list_cache_size, list_cache_ttl_s)

    def recommendation_inputs(
        self,
        *,
        user_id: str | None,
        session_id: str | None,
        context_items: int,
        related_per_item: int,
        popular: int,
        category: str | None,
        neighbour_sample: int = 0,
        neighbour_k: int = 0,
        recent_bucket: int | None = None,
    ) -> RecoInputs:
        """The session's (else the user's) state and version, the lists of its first
        ``context_items`` distinct items, the popular list, the session neighbours and the
        recent weights, in at most three pipelined round trips of bounded reads
        (:mod:`reco.adapters.redis_reads`)."""
        keys = self._keys
        recent_spec = None
        if recent_bucket is not None and popular > 0:
            recent_spec = ("recent", recent_bucket, popular)
        cached = self._cache.get_many([recent_spec] if recent_spec else [])
        with self._reaching("recommendation_inputs"):
            with self._client.pipeline(transaction=False) as pipe:
                # The landmark: cached values are relative to it (a rescale empties the cache).
                pipe.get(keys.landmark)
                if session_id is not None:
                    pipe.hmget(keys.session(session_id), [STATE_FIELD, VERSION_FIELD])
                elif user_id is not None:
                    pipe.hmget(keys.user(user_id), [PROFILE_FIELD, VERSION_FIELD])
                subject_replies = len(pipe)
                if recent_spec is not None and recent_spec not in cached:
                    self._send_recent(pipe, recent_spec[1], popular)
                replies = pipe.execute()
            self._cache.at_landmark(replies[0])
            blob, stored_version = replies[1] if subject_replies > 1 else (None, None)
            if recent_spec is not None and recent_spec not in cached:
                cached[recent_spec] = _recent_heads(recent_spec[1], replies[subject_replies:])
                self._cache.put_many({recent_spec: cached[recent_spec]})
            heads = cached.get(recent_spec, ([], []))
            version = int(stored_version or 0)
            if session_id is not None:
                recent, purchases, exclude = _session_context(blob)
                subject: tuple[str, str] | None = ("s", session_id)
            elif user_id is not None:
                recent, purchases, exclude = _user_context(blob)
                subject = ("u", user_id)
            else:
                recent, purchases, exclude, subject = [], [], None, None
            fresh = subject is not None and bool(recent) and self._cache.moved(subject, version)
            related_items = list(dict.fromkeys(recent))[:context_items]
            # The neighbour query: the context_items most recent items, oldest first.
            current = recent[:context_items][::-1]
            own = self._list_specs(
                related_items, related_per_item, current, neighbour_sample, neighbour_k
            )
            popular_spec = (keys.popular(category), popular)
            lists = self._read_lists(
                [*own, popular_spec] if popular > 0 else own, bypass=set(own) if fresh else ()
            )
            near = self._neighbour_scores(
                current, lists, exclude=exclude, sample=neighbour_sample, k=neighbour_k
            )
        return RecoInputs(
            context=recent,
            purchases=purchases,
            related={
                item: Related(
                    coview=lists[(keys.coview(item), related_per_item)],
                    sequence=lists[(keys.sequence(item), related_per_item)],
                )
                for item in related_items
            },
            popular=lists.get(popular_spec, []),
            version=version,
            neighbours=near,
            recent=heads[0],
            recent_before=heads[1],
        )

    def _send_recent(self, pipe: Pipeline | ClusterPipeline, bucket: int, limit: int) -> None:
        """Queue the reads of the recent weights of ``bucket`` and the one before: which
        buckets their ring slots hold, and the slots' heads (``_recent_heads`` parses them)."""
        keys = self._keys
        slots = (slot_of(bucket), slot_of(bucket - 1))
        pipe.hmget(keys.recent_ring, list(slots))
        for slot in slots:
            pipe.zrevrange(keys.recent(slot), 0, limit - 1, withscores=True)

    def neighbours(
        self, items: Sequence[str], *, exclude: str | None, sample: int, k: int
    ) -> Scored:
        """The neighbour part of ``recommendation_inputs`` for given items (oldest first)."""
        if not items or k <= 0 or sample <= 0:
            return []
        with self._reaching("neighbours"):
            lists = self._read_lists(self._list_specs([], 0, items, sample, k))
            return self._neighbour_scores(list(items), lists, exclude=exclude, sample=sample, k=k)

    def related(self, item_id: str, limit: int) -> Related:
        if limit <= 0:
            return Related()
        with self._reaching("related"):
            lists = self._read_lists(self._list_specs([item_id], limit, [], 0, 0))
        return Related(
            coview=lists[(self._keys.coview(item_id), limit)],
            sequence=lists[(self._keys.sequence(item_id), limit)],
        )

    def popular(self, limit: int, category: str | None = None) -> Scored:
        if limit <= 0:
            return []
        spec = (self._keys.popular(category), limit)
        with self._reaching("popular"):
            return self._read_lists([spec])[spec]

    def _list_specs(
        self,
        related_items: Sequence[str],
        related_per_item: int,
        current: Sequence[str],
        sample: int,
        k: int,
    ) -> list[tuple[str, int]]:
        """``(key, limit)`` of the co-view and sequence lists of ``related_items`` and, when a
        neighbour search is asked for, of the index lists of the distinct items of ``current``."""
        keys = self._keys
        specs = [
            spec
            for item in related_items
            for spec in (
                (keys.coview(item), related_per_item),
                (keys.sequence(item), related_per_item),
            )
        ]
        if k > 0 and sample > 0:
            per_item = self._neighbours_per_item
            specs += [(keys.neighbours(item), per_item) for item in dict.fromkeys(current)]
        return specs

    def _read_lists(
        self, specs: Sequence[tuple[str, int]], *, bypass: Collection[tuple[str, int]] = ()
    ) -> dict[tuple[str, int], Scored]:
        """``(key, limit)`` -> the key's ``limit`` highest members with their scores, highest
        first: from the cache except for ``bypass``, the rest in one pipeline."""
        return self._read_through(
            specs,
            bypass=bypass,
            send=lambda pipe, spec: pipe.zrevrange(spec[0], 0, spec[1] - 1, withscores=True),
            parse=_scored,
        )

    def _read_through(
        self,
        specs: Sequence[Any],
        *,
        send: Callable[[Pipeline | ClusterPipeline, Any], object],
        parse: Callable[[Any], Any],
        bypass: Collection[Any] = (),
    ) -> dict[Any, Any]:
        """Each of ``specs`` (a cache key) -> its value: from the per-process cache (except
        ``bypass``), the rest read in one pipeline (``send`` queues a spec's command,
        ``parse`` turns its reply into the value), then cached."""
        found = self._cache.get_many(s for s in specs if s not in bypass)
        missing = [spec for spec in dict.fromkeys(specs) if spec not in found]
        if missing:
            with self._client.pipeline(transaction=False) as pipe:
                for spec in missing:
                    send(pipe, spec)
                replies = pipe.execute()
            fetched = {spec: parse(reply) for spec, reply in zip(missing, replies, strict=True)}
            self._cache.put_many(fetched)
            found.update(fetched)
        return found

    def _neighbour_scores(
        self,
        current: Sequence[str],
        lists: Mapping[tuple[str, int], Scored],
        *,
        exclude: str | None,
        sample: int,
        k: int,
    ) -> Scored:
        """Select the ``k`` nearest sessions from the index lists read (the steps of
        :mod:`reco.signals.neighbours`), then score them from their items, read in one more
        pipeline (cached like the lists: a neighbour's later items show within the TTL)."""
        if k <= 0 or sample <= 0 or not current:
            return []
        per_item = self._neighbours_per_item
        chosen = select_neighbours(
            query(current),
            lambda item: lists[(self._keys.neighbours(item), per_item)],
            sample=sample,
            k=k,
            exclude=exclude,
        )
        if not chosen:
            return []
        items = self._read_through(
            [("state", n.session_id) for n in chosen],
            send=lambda pipe, spec: pipe.hget(self._keys.session(spec[1]), STATE_FIELD),
            parse=lambda blob: None if blob is None else orjson.loads(blob)["items"],
        )
        return neighbour_scores(
            (n, items[("state", n.session_id)])
            for n in chosen
            if items[("state", n.session_id)] is not None
        )

    def snapshot(self) -> dict[str, Any]:
        """The canonical form of ``MemoryFeatureStore.snapshot``, read key by key.

        Not atomic: consistent only while no batch is applied (tests, debugging). It SCANs
        the keyspace, so keep it off production stores of any size.
        """
        keys = self._keys
        with self._reaching("snapshot"):
            landmark = cast(str | None, self._client.get(keys.landmark))
            offsets = cast(dict[str, str], self._client.hgetall(keys.offsets))
            return {
                "landmark": None if landmark is None else float(landmark),
                "offsets": {int(p): int(o) for p, o in sorted(offsets.items(), key=_by_int)},
                "coview": self._lists(COVIEW),
                "sequence": self._lists(SEQUENCE),
                "popularity": dict(sorted(self._zset_items(keys.popular()))),
                "category_popularity": self._lists(CATEGORY_POPULAR),
                "profiles": self._profiles(),
                "sessions": self._sessions(),
                "neighbour_index": self._lists(NEIGHBOURS),
                "recent": self._recent_tables(),
                "experiments": self.experiment_counts(),
            }

    def experiment_counts(self) -> dict[str, int]:
        with self._reaching("experiment_counts"):
            stored = cast(dict[str, str], self._client.hgetall(self._keys.experiments))
        return {k: int(v) for k, v in sorted(stored.items())}

    def ready(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError as exc:
            logger.warning("feature store %s is not ready: %s", self._where, exc)
            return False

    def close(self) -> None:
        self._client.close()

    # -- snapshot helpers --------------------------------------------------------------
    def _scan(self, family: str) -> list[tuple[str, str]]:
        """``(key, id)`` of every key of ``family``, by key."""
        found = self._client.scan_iter(match=self._keys.pattern(family), count=PAGE)
        named = ((key, self._keys.strip(key, family)) for key in set(found))
        return sorted((key, some_id) for key, some_id in named if some_id is not None)

    def _recent_tables(self) -> dict[int, dict[str, float]]:
        """Bucket -> item -> weight, of every ring slot holding a bucket."""
        held = cast(dict[str, str], self._client.hgetall(self._keys.recent_ring))
        tables = {
            int(bucket): dict(sorted(self._zset_items(self._keys.recent(int(slot)))))
            for slot, bucket in held.items()
        }
        return {bucket: table for bucket, table in sorted(tables.items()) if table}

    def _zset_items(self, key: str) -> Scored:
        return _scored(self._client.zrange(key, 0, -1, withscores=True))

    def _lists(self, family: str) -> dict[str, dict[str, float]]:
        named = self._scan(family)
        with self._client.pipeline(transaction=False) as pipe:
            for key, _ in named:
                pipe.zrange(key, 0, -1, withscores=True)
            rows = pipe.execute()
        return dict(
            sorted(
                (some_id, dict(sorted(_scored(values))))
                for (_, some_id), values in zip(named, rows, strict=True)
            )
        )

    def _profiles(self) -> dict[str, dict[str, Any]]:
        named = self._scan(USER)
        blobs = self._hget_all([key for key, _ in named], PROFILE_FIELD)
        return dict(
            sorted(
                (user, UserProfile.from_dict(orjson.loads(blob)).to_dict())
                for (_, user), blob in zip(named, blobs, strict=True)
                if blob is not None
            )
        )

    def _sessions(self) -> dict[str, dict[str, Any]]:
        with self._client.pipeline(transaction=False) as pipe:
            for index in self._keys.session_indexes:
                pipe.zrange(index, 0, -1)
            listed = cast(list[list[str]], pipe.execute())
        ids = sorted({session for page in listed for session in page})
        blobs = self._hget_all([self._keys.session(s) for s in ids], STATE_FIELD)
        return {
            session: SessionState.from_dict(orjson.loads(blob)).to_dict()
            for session, blob in zip(ids, blobs, strict=True)
            if blob is not None
        }

    def _hget_all(self, names: list[str], field: str) -> list[str | None]:
        with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(name, field)
            return list(pipe.execute())

    @contextmanager
    def _reaching(self, operation: str) -> Iterator[None]:
        """Turn "Redis cannot serve now" into ``BackendUnavailable`` (``BackendTimeout``
        when the socket timeout passed): the processor pauses and retries, the api
        degrades. On a Cluster that includes a failover's window: a master gone, its slots
        not served yet (CLUSTERDOWN, a slot no node covers), a node not reached. Programming
        errors pass through unchanged."""
        try:
            yield
        except redis.TimeoutError as exc:
            raise BackendTimeout(
                "redis", operation, f"feature store at {self._where}: {operation}: {exc}"
            ) from exc
        except _UNAVAILABLE as exc:
            raise BackendUnavailable(f"feature store at {self._where}: {exc}") from exc
        except redis.ResponseError as exc:
            # A long script (a rescale) is running; in a pipeline, redis-py names the command.
            if str(exc).startswith("BUSY") or "caused error: BUSY" in str(exc):
                raise BackendUnavailable(f"feature store at {self._where}: {exc}") from exc
            raise


def _session_context(blob: str | None) -> tuple[list[str], list[str], str | None]:
    """A stored session state's items (most recent first), no purchases, and the session
    itself, which its own neighbour search leaves out."""
    if blob is None:
        return [], [], None
    state = SessionState.from_dict(orjson.loads(blob))
    return state.items[::-1], [], state.session_id


def _user_context(blob: str | None) -> tuple[list[str], list[str], str | None]:
    """A stored profile's recent items (most recent first), purchases, and current session,
    which the user's neighbour search leaves out."""
    if blob is None:
        return [], [], None
    profile = UserProfile.from_dict(orjson.loads(blob))
    return [item for item, _, _ in profile.recent], profile.purchases, profile.session_id


def _recent_heads(bucket: int, replies: Sequence[Any]) -> tuple[Scored, Scored]:
    """The heads of ``bucket`` and the one before from ``_send_recent``'s replies: a slot
    holding another bucket counts as empty."""
    held, current, before = replies
    return (
        _scored(current) if held[0] is not None and int(held[0]) == bucket else [],
        _scored(before) if held[1] is not None and int(held[1]) == bucket - 1 else [],
    )


def _scored(rows: Iterable[Sequence[Any]]) -> Scored:
    return [(str(member), float(score)) for member, score in rows]


def _by_int(item: tuple[str, str]) -> int:
    return int(item[0])
