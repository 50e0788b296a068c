"""The feature store on Redis, shared by the processor (its only writer) and every api replica.

Round trips are the budget: a processor batch is one EVALSHA of ``APPLY`` (all increments,
caps, profiles, sessions, dedupe ids, versions, offsets and landmark, atomically, since a
Lua script runs alone); ``load_states`` one of ``LOAD_STATES``; ``unseen`` one ZMSCORE.
Redis runs one command at a time for every api replica together, so the api's reads are
bounded reads only, pipelined, cached per process for at most a second, and every search
and score runs in the api (:mod:`reco.adapters.redis_reads`): a recommendation costs Redis
a few keys of bounded size, not a script. Key names and the schema are in
:mod:`reco.adapters.redis_keys`, the scripts in :mod:`reco.adapters.redis_scripts`.

Replays. The apply script is a compare-and-set on the offsets: each partition the batch
names must be stored exactly at the batch's base offset. Ahead (``STALE``): the records
were applied, by this processor before a lost reply (redis-py retries a command whose
connection dropped) or by another one that took the partition over while this one stalled
(a zombie). Absent or behind (``RESET``): Redis lost its data (a restart without
persistence) and the processor must rebuild from the log. Nothing is written either way.

Floats. Scores are IEEE doubles on both sides and cross the wire as shortest round-trip
decimal strings (orjson out; ``%.17g`` from Lua numbers and in replies), so a stored value
is bit for bit what the in-memory store holds, even at the ~1e77 forward decay reaches
before the landmark moves. Lua's ``tostring`` (14 digits) is never applied to a score.

Needs Redis >= 7.0 (script flags; ZMSCORE is 6.2).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Self, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from reco.adapters import redis_sentinel
from reco.adapters.caps import TRIM_SLACK
from reco.adapters.redis_keys import (
    CATEGORY_POPULAR,
    COVIEW,
    DEFAULT_PREFIX,
    FAMILIES,
    SEQUENCE,
    RedisKeys,
)
from reco.adapters.redis_reads import PAGE, RedisReads
from reco.adapters.redis_scripts import (
    APPLIED,
    APPLY,
    LOAD_STATES,
    RESCALE,
    RESET,
    STALE,
)
from reco.exceptions import ConfigError
from reco.ports import ApplyOutcome
from reco.signals import FeatureDelta, SessionState, UserProfile
from reco.signals.trend import ring_writes

logger = logging.getLogger(__name__)

DAY_S: Final = 86_400
PROFILE_TTL_S: Final = 30 * DAY_S
SESSION_TTL_S: Final = 2 * DAY_S


class RedisFeatureStore(RedisReads):
    """The ``FeatureStore`` of the stack deployment on one Redis; see the module docstring.
    The reads are :class:`reco.adapters.redis_reads.RedisReads`."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_related_per_item: int = 100,
        max_popular: int = 10_000,
        max_sessions: int = 200_000,
        dedupe_window: int = 500_000,
        neighbour_sessions_per_item: int = 100,
        profile_ttl_s: int = PROFILE_TTL_S,
        session_ttl_s: int = SESSION_TTL_S,
        where: str = "Redis",
        slow_client: redis.Redis | None = None,
        list_cache_size: int = 0,
        list_cache_ttl_s: float = 0.0,
    ) -> None:
        """``client`` must decode replies to ``str`` (``decode_responses=True``), as
        :meth:`from_url` sets up; ``where`` names the server in logs and errors.

        ``slow_client`` (default: ``client``) runs the rescale, which may take longer than
        any sensible read timeout; give it a long one and no retries, since a retry sent
        while the first call still runs would only be answered BUSY.

        ``list_cache_size`` lists of items (co-view, sequence, neighbour index, popular) are
        cached for ``list_cache_ttl_s`` (at most a second) by the api's reads; 0: no cache.
        """
        if not client.get_encoder().decode_responses:
            raise ConfigError("RedisFeatureStore needs a client with decode_responses=True")
        check_settings(
            max_related_per_item, max_popular, max_sessions, neighbour_sessions_per_item, minimum=1
        )
        check_settings(dedupe_window, minimum=0)
        check_settings(profile_ttl_s, session_ttl_s, minimum=1)
        self._keys: RedisKeys = RedisKeys(prefix)
        super().__init__(
            client,
            keys=self._keys,
            where=where,
            neighbour_sessions_per_item=neighbour_sessions_per_item,
            list_cache_size=list_cache_size,
            list_cache_ttl_s=list_cache_ttl_s,
        )
        self._single = client
        self._slow_client = slow_client or client
        self._limits = (
            max_related_per_item,
            max_popular,
            max_sessions,
            dedupe_window,
            int(profile_ttl_s),
            int(session_ttl_s),
            TRIM_SLACK,
            neighbour_sessions_per_item,
        )
        self._apply = client.register_script(APPLY)
        self._load_states = client.register_script(LOAD_STATES)
        self._rescale = client.register_script(RESCALE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_related_per_item: int = 100,
        max_popular: int = 10_000,
        max_sessions: int = 200_000,
        dedupe_window: int = 500_000,
        neighbour_sessions_per_item: int = 100,
        profile_ttl_s: int = PROFILE_TTL_S,
        session_ttl_s: int = SESSION_TTL_S,
        socket_timeout_s: float = 5.0,
        rescale_timeout_s: float = 60.0,
        retries: int = 3,
        list_cache_size: int = 0,
        list_cache_ttl_s: float = 0.0,
    ) -> Self:
        """A store on ``redis://`` / ``rediss://`` / ``unix://`` ``url``, or on the master
        that Sentinels watch, ``redis+sentinel://`` (:mod:`reco.adapters.redis_sentinel`).

        Every call waits at most ``socket_timeout_s`` for a reply, except the rescale (it
        rewrites every decayed score, once in years of landmark moves), which gets
        ``rescale_timeout_s``. Retries are few and short (10 ms to 100 ms apart) instead
        of redis-py's ten up to a second apart: an api request has milliseconds, and a
        dead Redis should turn into ``BackendUnavailable`` quickly. RESP2, so that
        replies have one shape whatever the server, and no extra handshake per connection.
        """
        if urlsplit(url).scheme.lower() in redis_sentinel.SCHEMES:
            client, slow_client = redis_sentinel.connect(
                url,
                socket_timeout_s=socket_timeout_s,
                rescale_timeout_s=rescale_timeout_s,
                retries=retries,
            )
            where = redis_sentinel.redacted_url(url)
        else:
            options: dict[str, Any] = {
                "decode_responses": True,
                "protocol": 2,
                "socket_connect_timeout": socket_timeout_s,
                "client_name": "reco-features",
            }
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout_s,
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries),
                **options,
            )
            slow_client = redis.Redis.from_url(
                url, socket_timeout=rescale_timeout_s, retry=Retry(NoBackoff(), 0), **options
            )
            where = redacted_url(url)
        return cls(
            client,
            slow_client=slow_client,
            prefix=prefix,
            max_related_per_item=max_related_per_item,
            max_popular=max_popular,
            max_sessions=max_sessions,
            dedupe_window=dedupe_window,
            neighbour_sessions_per_item=neighbour_sessions_per_item,
            profile_ttl_s=profile_ttl_s,
            session_ttl_s=session_ttl_s,
            where=where,
            list_cache_size=list_cache_size,
            list_cache_ttl_s=list_cache_ttl_s,
        )

    # -- processor side ----------------------------------------------------------------
    def applied_offsets(self) -> dict[int, int]:
        with self._reaching("applied_offsets"):
            stored = cast(dict[str, str], self._single.hgetall(self._keys.offsets))
        return {int(p): int(o) for p, o in stored.items()}

    def landmark(self) -> float | None:
        with self._reaching("landmark"):
            stored = cast(str | None, self._single.get(self._keys.landmark))
        return None if stored is None else float(stored)

    def load_states(
        self, users: Iterable[str], sessions: Iterable[str]
    ) -> tuple[dict[str, UserProfile], dict[str, SessionState]]:
        user_ids = list(dict.fromkeys(users))
        session_ids = list(dict.fromkeys(sessions))
        if not user_ids and not session_ids:
            return {}, {}
        with self._reaching("load_states"):
            blobs, states = self._load_states(
                keys=[self._keys.landmark],
                args=[self._keys.prefix, len(user_ids), *user_ids, *session_ids],
            )
        profiles = {
            user: UserProfile.from_dict(orjson.loads(blob))
            for user, blob in zip(user_ids, blobs, strict=True)
            if blob is not None
        }
        loaded = (SessionState.from_dict(orjson.loads(blob)) for blob in states)
        return profiles, {state.session_id: state for state in loaded}

    def unseen(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        with self._reaching("unseen"):
            scores: list[float | None] = self._single.zmscore(self._keys.seen, list(event_ids))
        return {e for e, score in zip(event_ids, scores, strict=True) if score is None}

    def apply(self, delta: FeatureDelta) -> ApplyOutcome:
        """Write ``delta`` in one EVALSHA, a compare-and-set on the offsets (see the port).

        Refused means nothing was written: not the features, not the offsets. Raises
        ``ValueError`` for a delta holding a value that is not finite (checked before
        anything is sent, since a failing command inside a script would leave the commands
        before it applied).
        """
        args = self._apply_args(delta)
        self._cache.clear()  # what this instance writes, it reads at once
        with self._reaching("apply"):
            reply: list[Any] = self._apply(keys=[self._keys.landmark], args=args)
        status = int(reply[0])
        if status == APPLIED:
            return ApplyOutcome.APPLIED
        if status in (STALE, RESET):
            outcome = ApplyOutcome.STALE if status == STALE else ApplyOutcome.RESET
            logger.warning(
                "feature store %s refused a batch of %d events (%s): partition %s is stored "
                "at offset %s, the batch starts at %s; nothing written",
                self._where,
                delta.events,
                outcome.value,
                reply[1],
                "none" if int(reply[2]) < 0 else reply[2],
                delta.base_offsets.get(int(reply[1]), "none"),
            )
            return outcome
        logger.info(
            "feature store %s refused a batch folded against landmark %r: the store's is %s",
            self._where,
            delta.landmark,
            reply[1],
        )
        return ApplyOutcome.OTHER_LANDMARK

    def rescale(
        self,
        landmark: float,
        coview_factor: float,
        popularity_factor: float,
        *,
        from_landmark: float | None = None,
    ) -> None:
        """Multiply every co-view, sequence and popularity value, and move the landmark.

        One script, so readers never see values against the wrong landmark, and Redis
        serves nothing else while it runs: it SCANs the whole keyspace (every key of the
        db) and rewrites every list with a ZUNIONSTORE onto itself, ~2 µs per stored value
        (0.6 s for 370 000 values in 37 000 keys on a 2-vCPU test machine): other clients
        wait, and get BUSY (``BackendUnavailable``) past ``busy-reply-threshold`` (5 s).
        The processor calls it once per ~256 half-lives of the shortest signal (768 days
        with the default 3-day popularity half-life). A call with the landmark already
        stored is a no-op, which makes a retry after a lost reply safe; so is a call whose
        ``from_landmark`` is no longer the stored one (another processor moved it).
        """
        keys = self._keys
        started = time.perf_counter()
        self._cache.clear()
        with self._reaching("rescale"):
            scaled = self._rescale(
                client=self._slow_client,
                keys=[keys.landmark],
                args=[
                    keys.prefix,
                    float(landmark),
                    float(coview_factor),
                    float(popularity_factor),
                    keys.pattern(COVIEW),
                    keys.pattern(SEQUENCE),
                    keys.pattern(CATEGORY_POPULAR),
                    "" if from_landmark is None else float(from_landmark),
                ],
            )
        logger.info(
            "feature store %s moved the landmark to %r: %s values rescaled in %.3f s",
            self._where,
            landmark,
            "no" if int(scaled) < 0 else int(scaled),
            time.perf_counter() - started,
        )

    def reset(self) -> None:
        """Delete every key of this store, a page of keys per command, so that Redis keeps
        serving the api meanwhile. The offsets and the landmark go last: a reset cut short
        leaves offsets beside partial features, which no processor replays onto; run it
        again. The processors must be stopped (``reco rebuild`` says so)."""
        keys = self._keys
        deleted = 0
        self._cache.clear()
        with self._reaching("reset"):
            for family in FAMILIES:
                found = self._single.scan_iter(match=keys.pattern(family), count=PAGE)
                for page in pages(found):
                    deleted += int(self._single.unlink(*page))
            deleted += int(self._single.unlink(*keys.singletons))
        logger.info("feature store %s reset: %d keys deleted", self._where, deleted)

    def _apply_args(self, delta: FeatureDelta) -> list[Any]:
        check_finite(delta)
        payload = {
            "offsets": sorted(delta.offsets.items()),
            "base": sorted(delta.base_offsets.items()),
            "coview": delta.coview,
            "sequence": delta.sequence,
            "popularity": delta.popularity,
            "category_popularity": delta.category_popularity,
            "recent": ring_writes(delta.recent),
            "index": delta.neighbour_index,
            "users": [[user, p.session_id] for user, p in delta.profiles.items()],
            "sessions": list(delta.sessions),
            "event_ids": delta.event_ids,
            "experiments": delta.experiments,
        }
        profiles = [orjson.dumps(p.to_dict()) for p in delta.profiles.values()]
        states = [orjson.dumps(s.to_dict()) for s in delta.sessions.values()]
        return [
            self._keys.prefix,
            float(delta.landmark),
            *self._limits,
            orjson.dumps(payload),
            *profiles,
            *states,
        ]

    def close(self) -> None:
        super().close()
        if self._slow_client is not self._single:
            self._slow_client.close()


def pages(names: Iterable[str]) -> Iterator[list[str]]:
    """``names`` in lists of at most a SCAN page each."""
    names = iter(names)
    while page := list(itertools.islice(names, PAGE)):
        yield page


def check_finite(delta: FeatureDelta) -> None:
    tables: list[Mapping[str, float]] = [delta.popularity]
    for nested in (delta.coview, delta.sequence, delta.category_popularity):
        tables.extend(nested.values())
    tables.extend(delta.recent.values())
    if not math.isfinite(delta.landmark) or not all(
        all(map(math.isfinite, table.values())) for table in tables
    ):
        raise ValueError("delta holds a value that is not finite; nothing was written")


def check_settings(*values: int, minimum: int) -> None:
    if any(v < minimum for v in values):
        raise ConfigError(f"Redis feature store limits must be >= {minimum}, got {values}")


def redacted_url(url: str) -> str:
    """``url`` without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
