"""The feature store on a Redis Cluster: the single store's data, spread over slot groups.

Every key lives in a slot group, a hash tag chosen by the id it is named after (the layout
is :class:`reco.adapters.redis_keys.ClusterKeys`): a batch writes to many groups, on every
master, and a script may only touch the keys of one. So a batch is no longer one atomic
script; it is a write-ahead journal, finished by whoever finds it:

a. **Journal** (one script on the meta slot): the compare-and-set of the offsets and the
   landmark check, as on a single Redis (``STALE``, ``RESET``, ``OTHER_LANDMARK``); then
   the batch's writes, split per group (:mod:`reco.adapters.redis_journal`), go into
   ``{m}:pending`` under the batch's id, and the offsets move on. From here the batch is
   applied, whatever happens to this process.
b. **Groups** (one ``GROUP_APPLY`` per group, all in one pipeline that redis-py splits per
   node): each writes its part and the batch's offsets into its own ``applied`` hash,
   atomically, unless that hash holds them already (the part is there: a replay).
c. **Done**: the journal is deleted, and sessions the groups' caps dropped are deleted.

A batch interrupted after (a) is finished, never folded again: ``applied_offsets`` (which
the processor calls on every resume, so after every failure), and the first
``load_states``, ``unseen`` or ``apply`` of a store, first run (b) and (c) for every
journal pending, then answer. Finishing is idempotent, so two processes may do it at once,
and a zombie whose step (b) arrives after someone else finished its batch writes nothing.
Kafka keys messages by user, so a user's and its sessions' states are written only by the
processor that owns their partition; co-view and popularity increments from several
processors add up in any order.

Failover. Each pipeline that writes ends with ``WAIT 1`` on every node it wrote to (at
most ``replica_wait_ms``, :mod:`reco.adapters.redis_cluster_client`): its reply comes once
a replica holds the writes, so a master killed after it loses nothing. Killed before, the
batch is still pending on the meta slot (or, if the meta master went, was never
acknowledged), and the next resume finishes or folds it again. While a master's slots
wait for its replica's promotion, calls fail as ``BackendUnavailable``: the processor
pauses and resumes, the api degrades, as when a single Redis restarts. When no replica
acknowledges in time (a master left without one by a failover, or the first write after a
replica's full copy, which can take a second), the batch goes on and a warning says so: a
second failure in that window could lose writes, and with them the exactly-once.

Landmark moves (``rescale``, once in ~768 days). The meta landmark moves first, with the
move (from, to, factors) recorded and not ``done``: no batch is journaled until it is (step
a answers ``OTHER_LANDMARK``; the processor folds again and, past its folds, pauses). The
mover finishes the pending journals, lists each group's lists (SCAN on every master), and
rescales each group in one script that declares them all and records its new landmark
(with the old one and the factors, so that a payload folded before the move would be
scaled on arrival; by the order above none should be). A mover that dies leaves its lease
to expire; the next recovery finishes the move. api readers may see groups at two
landmarks while a move runs (seconds).

Memory. ``max_sessions`` and ``dedupe_window`` are split over the groups (rounded up):
each group keeps its most recent sessions and event ids, not the store as a whole. A
session dropped by its group's cap is listed in the group's ``dropped`` set by the script
(which may only touch the keys it declares, and the dropped session's hash is not one of
them) and deleted by the writer right after, else by the next recovery; ``load_states``
takes a session for gone once its group's index no longer lists it.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Final, Self, cast

import orjson
import redis
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException

from reco.adapters.caps import TRIM_SLACK
from reco.adapters.redis_cluster_client import ClusterPipelines, connect, redacted_cluster_url
from reco.adapters.redis_cluster_scripts import (
    GROUP_APPLY,
    JOURNAL,
    MOVE_DONE,
    MOVE_GROUP,
    MOVE_LEASE,
    MOVE_START,
    SKIPPED,
    SWEEP,
    UNFINISHED,
)
from reco.adapters.redis_features import (
    PROFILE_TTL_S,
    SESSION_TTL_S,
    check_finite,
    check_settings,
    pages,
)
from reco.adapters.redis_journal import Journal, Limits, journal
from reco.adapters.redis_keys import (
    CATEGORY_POPULAR,
    COVIEW,
    DEFAULT_PREFIX,
    META,
    PROFILE_FIELD,
    SEQUENCE,
    SESSION_FIELD,
    STATE_FIELD,
    ClusterKeys,
)
from reco.adapters.redis_reads import PAGE, RedisReads
from reco.adapters.redis_scripts import APPLIED, OTHER_LANDMARK, RESET, STALE
from reco.exceptions import BackendUnavailable, ConfigError, RecoError
from reco.ports import ApplyOutcome
from reco.signals import FeatureDelta, SessionState, UserProfile

logger = logging.getLogger(__name__)

_SCRIPTS: Final = {
    "journal": JOURNAL,
    "group": GROUP_APPLY,
    "sweep": SWEEP,
    "move_start": MOVE_START,
    "move_lease": MOVE_LEASE,
    "move_group": MOVE_GROUP,
    "move_done": MOVE_DONE,
}


class JournalError(RecoError):
    """A slot group contradicts the journal it was given: it holds part of a batch's
    offsets, or another landmark than the batch's or the one before. Nothing was written to
    that group; the store needs a person (and most likely a rebuild, ``reco rebuild``)."""


class RedisClusterFeatureStore(RedisReads):
    """The ``FeatureStore`` on a Redis Cluster; see the module docstring. The reads are
    :class:`reco.adapters.redis_reads.RedisReads` with the Cluster's key layout."""

    def __init__(
        self,
        client: RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        slot_groups: int = 64,
        max_related_per_item: int = 100,
        max_popular: int = 10_000,
        max_sessions: int = 200_000,
        dedupe_window: int = 500_000,
        neighbour_sessions_per_item: int = 100,
        profile_ttl_s: int = PROFILE_TTL_S,
        session_ttl_s: int = SESSION_TTL_S,
        where: str = "Redis Cluster",
        slow_client: RedisCluster | None = None,
        list_cache_size: int = 0,
        list_cache_ttl_s: float = 0.0,
        replica_wait_ms: int = 100,
        move_lease_s: float = 60.0,
    ) -> None:
        """As :class:`reco.adapters.redis_features.RedisFeatureStore`, plus:
        ``slot_groups`` (``redis_slot_groups``), the number of hash tags keys spread over;
        ``replica_wait_ms``, how long each write waits for a replica to hold it (0: no
        wait); ``move_lease_s``, how long a landmark move is left to its mover before the
        next recovery takes it over."""
        if not client.get_encoder().decode_responses:
            raise ConfigError("RedisClusterFeatureStore needs decode_responses=True")
        check_settings(
            max_related_per_item, max_popular, max_sessions, neighbour_sessions_per_item, minimum=1
        )
        check_settings(dedupe_window, replica_wait_ms, minimum=0)
        check_settings(profile_ttl_s, session_ttl_s, minimum=1)
        try:
            keys = ClusterKeys(prefix, slot_groups)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        super().__init__(
            client,
            keys=keys,
            where=where,
            neighbour_sessions_per_item=neighbour_sessions_per_item,
            list_cache_size=list_cache_size,
            list_cache_ttl_s=list_cache_ttl_s,
        )
        self._keys: ClusterKeys = keys
        self._cluster = client
        self._io = ClusterPipelines(
            client,
            slow_client or client,
            scripts=_SCRIPTS,
            where=where,
            replica_wait_ms=replica_wait_ms,
        )
        self._scripts: dict[str, Script] = self._io.scripts
        self._limits = Limits(
            max_related=max_related_per_item,
            max_popular=max_popular,
            sessions_per_group=math.ceil(max_sessions / slot_groups),
            window_per_group=math.ceil(dedupe_window / slot_groups),
            profile_ttl_s=int(profile_ttl_s),
            session_ttl_s=int(session_ttl_s),
            slack=TRIM_SLACK,
            neighbours_per_item=neighbour_sessions_per_item,
        )
        self._lease_ms = max(1, int(move_lease_s * 1000))
        self._token = uuid.uuid4().hex
        """Names this store as a landmark mover (the lease's value)."""
        self._recovered = False
        """Whether no journal this store may have left pending is unfinished."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        slot_groups: int = 64,
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
        replica_wait_ms: int = 100,
    ) -> Self:
        """A store on ``redis+cluster://[user:password@]host:port[,host:port...]``
        (``rediss+cluster://`` for TLS): any node bootstraps the client, which then asks
        the Cluster for the rest; several let it start while one is down.

        Timeouts and retries as the single store's (``RedisFeatureStore.from_url``): short,
        so that a master's failover shows as ``BackendUnavailable`` within a fraction of a
        second, and redis-py refreshes its slot map on the errors it meets meanwhile."""
        client, slow_client = connect(
            url,
            socket_timeout_s=socket_timeout_s,
            rescale_timeout_s=rescale_timeout_s,
            retries=retries,
        )
        return cls(
            client,
            slow_client=slow_client,
            prefix=prefix,
            slot_groups=slot_groups,
            max_related_per_item=max_related_per_item,
            max_popular=max_popular,
            max_sessions=max_sessions,
            dedupe_window=dedupe_window,
            neighbour_sessions_per_item=neighbour_sessions_per_item,
            profile_ttl_s=profile_ttl_s,
            session_ttl_s=session_ttl_s,
            where=redacted_cluster_url(url),
            list_cache_size=list_cache_size,
            list_cache_ttl_s=list_cache_ttl_s,
            replica_wait_ms=replica_wait_ms,
            move_lease_s=rescale_timeout_s,
        )

    # -- processor side ----------------------------------------------------------------
    def applied_offsets(self) -> dict[int, int]:
        """The meta offsets, after finishing every journal pending (module docstring)."""
        with self._reaching("applied_offsets"):
            self._recover()
            stored = cast(dict[str, str], self._cluster.hgetall(self._keys.offsets))
        return {int(p): int(o) for p, o in stored.items()}

    def landmark(self) -> float | None:
        with self._reaching("landmark"):
            stored = cast(str | None, self._cluster.get(self._keys.landmark))
        return None if stored is None else float(stored)

    def load_states(
        self, users: Iterable[str], sessions: Iterable[str]
    ) -> tuple[dict[str, UserProfile], dict[str, SessionState]]:
        """Two pipelined round trips: the users' profiles and current sessions, then the
        sessions' states with their place in their group's index (a session the cap
        dropped, whose hash is not deleted yet, is not one)."""
        user_ids = list(dict.fromkeys(users))
        wanted = dict.fromkeys(sessions)
        if not user_ids and not wanted:
            return {}, {}
        keys = self._keys
        with self._reaching("load_states"):
            self._recover_once()
            rows = self._io.run(
                lambda pipe: [
                    pipe.hmget(keys.user(u), [PROFILE_FIELD, SESSION_FIELD]) for u in user_ids
                ]
            )
            profiles: dict[str, UserProfile] = {}
            for user, (blob, current) in zip(user_ids, rows, strict=True):
                if blob is not None:
                    profiles[user] = UserProfile.from_dict(orjson.loads(blob))
                    if current is not None:
                        wanted[current] = None
            ids = list(wanted)

            def read(pipe: ClusterPipeline) -> None:
                for s in ids:
                    pipe.hget(keys.session(s), STATE_FIELD)
                    pipe.zscore(keys.sessions(keys.group_of(s)), s)

            replies = self._io.run(read) if ids else []
        states = (
            SessionState.from_dict(orjson.loads(blob))
            for blob, listed in zip(replies[::2], replies[1::2], strict=True)
            if blob is not None and listed is not None
        )
        return profiles, {state.session_id: state for state in states}

    def unseen(self, event_ids: Sequence[str]) -> set[str]:
        """One ZMSCORE per slot group, in one pipeline."""
        if not event_ids:
            return set()
        by_group: defaultdict[int, list[str]] = defaultdict(list)
        for event_id in dict.fromkeys(event_ids):
            by_group[self._keys.group_of(event_id)].append(event_id)
        groups = list(by_group.items())
        with self._reaching("unseen"):
            self._recover_once()
            replies = self._io.run(
                lambda pipe: [pipe.zmscore(self._keys.seen(g), ids) for g, ids in groups]
            )
        return {
            event_id
            for (_, ids), scores in zip(groups, replies, strict=True)
            for event_id, score in zip(ids, scores, strict=True)
            if score is None
        }

    def apply(self, delta: FeatureDelta) -> ApplyOutcome:
        """Journal ``delta``, write it to its groups, then drop the journal (see the module
        docstring); a compare-and-set on the offsets as on a single Redis. Refused means
        nothing was written. Once journaled, the batch is applied even if this call fails:
        the next ``applied_offsets`` (the processor's resume) finishes it."""
        check_finite(delta)
        batch = journal(delta, self._keys, self._limits)
        self._cache.clear()  # what this instance writes, it reads at once
        with self._reaching("apply"):
            self._recover_once()
            self._recovered = False  # until this batch is known to be finished
            reply = self._journal(batch, delta)
            status = int(reply[0])
            if status == APPLIED:
                self._finish(batch)
                self._recovered = True
                return ApplyOutcome.APPLIED
        self._recovered = True  # refused: nothing was journaled
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
        if status != OTHER_LANDMARK:
            raise JournalError(f"feature store {self._where}: unexpected journal reply {reply}")
        logger.info(
            "feature store %s refused a batch folded against landmark %r: the store's is %s%s",
            self._where,
            delta.landmark,
            reply[1],
            "" if float(reply[1]) != delta.landmark else " (a landmark move is not done)",
        )
        return ApplyOutcome.OTHER_LANDMARK

    def _journal(self, batch: Journal, delta: FeatureDelta) -> list[Any]:
        """Step a, waiting for the meta master's replica."""
        keys = self._keys
        check = orjson.dumps(
            {
                "offsets": batch.offsets,
                "base": sorted(delta.base_offsets.items()),
                "experiments": delta.experiments,
            }
        )
        blob = batch.dumps() if batch.writes else ""

        def send(pipe: ClusterPipeline) -> None:
            self._scripts["journal"](
                keys=[keys.landmark, keys.offsets, keys.pending, keys.moved, keys.experiments],
                args=[batch.batch, float(batch.landmark), check, blob],
                client=pipe,
            )

        replies = self._io.run(
            send, replicated=[keys.landmark], what=f"journal of batch {batch.batch}"
        )
        return cast(list[Any], replies[0])

    def _finish(self, batch: Journal) -> None:
        """Steps b and c of ``batch``; safe to run again, and from any process."""
        self._done(batch, self._write_groups(batch))

    def _write_groups(self, batch: Journal) -> dict[int, list[str]]:
        """Step b: every group's write, in one pipeline; the sessions each group dropped."""
        writes = batch.writes
        if not writes:
            return {}

        def send(pipe: ClusterPipeline) -> None:
            for w in writes:
                self._scripts["group"](keys=w.keys, args=w.args, client=pipe)

        replies = self._io.run(
            send, replicated=[w.keys[0] for w in writes], what=f"batch {batch.batch}"
        )
        dropped: dict[int, list[str]] = {}
        for w, reply in zip(writes, replies, strict=True):
            status = int(reply[0])
            if status == APPLIED and len(reply) > 1:
                dropped[int(w.group)] = [str(s) for s in reply[1:]]
            elif status not in (APPLIED, SKIPPED):
                raise JournalError(
                    f"feature store {self._where}: slot group {w.group} refused batch "
                    f"{batch.batch} (landmark {batch.landmark!r}): {reply[1:]}; nothing of it "
                    "written there. Stop the processors and run `reco rebuild`."
                )
        return dropped

    def _done(self, batch: Journal, dropped: dict[int, list[str]]) -> None:
        """Step c: the journal goes, and the hashes of the sessions dropped with it."""

        def send(pipe: ClusterPipeline) -> None:
            pipe.hdel(self._keys.pending, batch.batch)
            self._send_sweeps(pipe, dropped)

        self._io.run(send)

    def _send_sweeps(self, pipe: ClusterPipeline, dropped: dict[int, list[str]]) -> None:
        keys = self._keys
        for group, sessions in dropped.items():
            self._scripts["sweep"](
                keys=[
                    keys.dropped(group),
                    keys.sessions(group),
                    *(keys.session(s) for s in sessions),
                ],
                args=sessions,
                client=pipe,
            )

    # -- recovery ------------------------------------------------------------------------
    def _recover_once(self) -> None:
        if not self._recovered:
            self._recover()

    def _recover(self) -> None:
        """Finish every pending journal, a landmark move left by its mover, and the
        deletion of dropped sessions."""
        self._finish_pending()
        self._finish_move()
        self._sweep_leftovers()
        self._recovered = True

    def _finish_pending(self) -> None:
        pending = cast(dict[str, str], self._cluster.hgetall(self._keys.pending))
        journals = sorted((Journal.loads(blob) for blob in pending.values()), key=_order)
        for batch in journals:
            logger.info(
                "feature store %s: finishing batch %s, journaled but not applied to every "
                "slot group",
                self._where,
                batch.batch,
            )
            self._finish(batch)

    def _sweep_leftovers(self) -> None:
        keys = self._keys
        groups = range(keys.groups)
        listed = self._io.run(lambda pipe: [pipe.smembers(keys.dropped(g)) for g in groups])
        dropped = {g: sorted(ids) for g, ids in zip(groups, listed, strict=True) if ids}
        if dropped:
            self._io.run(lambda pipe: self._send_sweeps(pipe, dropped))

    # -- landmark moves ------------------------------------------------------------------
    def rescale(
        self,
        landmark: float,
        coview_factor: float,
        popularity_factor: float,
        *,
        from_landmark: float | None = None,
    ) -> None:
        """Move the landmark: the meta landmark first (a compare-and-set, as on a single
        Redis: a no-op when it is already ``landmark`` or no longer ``from_landmark``), then
        every group (module docstring). Raises ``BackendUnavailable`` while another move
        is not done."""
        keys = self._keys
        started = time.perf_counter()
        self._cache.clear()
        with self._reaching("rescale"):
            reply = self._scripts["move_start"](
                keys=[keys.landmark, keys.moved, keys.mover],
                args=[
                    float(landmark),
                    float(coview_factor),
                    float(popularity_factor),
                    "" if from_landmark is None else float(from_landmark),
                    self._token,
                    self._lease_ms,
                ],
            )
            if int(reply[0]) == UNFINISHED:
                raise BackendUnavailable(
                    f"feature store {self._where}: a landmark move is not done yet; "
                    f"moving to {landmark!r} waits for it"
                )
            # Begun now, or by an earlier call whose reply was lost: finish it unless
            # another process holds its lease.
            scaled = self._finish_move()
        logger.info(
            "feature store %s moved the landmark to %r: %s values rescaled in %.3f s",
            self._where,
            landmark,
            "no" if scaled is None else scaled,
            time.perf_counter() - started,
        )

    def _finish_move(self) -> int | None:
        """Rescale every group still at the landmark a move started from, if a move is not
        done and no other process holds its lease; the values rescaled, else ``None``."""
        keys = self._keys
        reply = self._scripts["move_lease"](
            keys=[keys.moved, keys.mover], args=[self._token, self._lease_ms]
        )
        if int(reply[0]) != 1:
            return None
        start, to, coview, popularity = (str(v) for v in reply[1:5])
        self._finish_pending()
        coview_lists, popularity_lists = self._lists_by_group()
        groups = [str(g) for g in keys.all_groups]

        def send(pipe: ClusterPipeline) -> None:
            for g in groups:
                cv, pop = coview_lists[g], popularity_lists[g]
                self._scripts["move_group"](
                    keys=[keys.scale(g), *cv, *pop],
                    args=[start, to, coview, popularity, len(cv)],
                    client=pipe,
                )

        replies = self._io.run(send, slow=True)
        broken = [(g, r) for g, r in zip(groups, replies, strict=True) if len(r) > 1]
        if broken:
            raise JournalError(
                f"feature store {self._where}: moving the landmark from {start} to {to}, "
                f"slot groups at another landmark: {broken[:5]}"
            )
        self._scripts["move_done"](keys=[keys.moved, keys.mover], args=[to, self._token])
        return sum(max(int(r[0]), 0) for r in replies)

    def _lists_by_group(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """The co-view and sequence lists, and the popularity lists, of each group."""
        keys = self._keys
        coview: defaultdict[str, list[str]] = defaultdict(list)
        popularity: defaultdict[str, list[str]] = defaultdict(list)
        for family, found in ((COVIEW, coview), (SEQUENCE, coview), (CATEGORY_POPULAR, popularity)):
            for key in sorted(set(self._io.slow.scan_iter(match=keys.pattern(family), count=PAGE))):
                parsed = keys.parse(key)
                if parsed is not None and keys.strip(key, family) is not None:
                    found[parsed[0]].append(key)
        popularity[META].append(keys.popular())
        return coview, popularity

    # -- everything ----------------------------------------------------------------------
    def reset(self) -> None:
        """Delete every key of this store, a page of one group's keys per UNLINK (a Cluster
        refuses keys of several slots in one command), so that Redis keeps serving the api
        meanwhile; the offsets and the landmark last (see ``RedisFeatureStore.reset``)."""
        keys = self._keys
        self._cache.clear()
        last = [keys.offsets, keys.landmark]
        by_group: defaultdict[str, list[str]] = defaultdict(list)
        deleted = 0
        with self._reaching("reset"):
            for key in set(self._cluster.scan_iter(match=keys.pattern(), count=PAGE)):
                parsed = keys.parse(key)
                if parsed is not None and key not in last:
                    by_group[parsed[0]].append(key)
            meta = by_group.pop(META, [])
            for batches in (list(by_group.values()), [meta], [last]):
                deleted += self._unlink(batches)
        self._recovered = True
        logger.info("feature store %s reset: %d keys deleted", self._where, deleted)

    def _unlink(self, batches: list[list[str]]) -> int:
        """UNLINK the keys of each batch (all of one slot group), a page per command."""

        def send(pipe: ClusterPipeline) -> None:
            for names in batches:
                for page in pages(names):
                    pipe.execute_command("UNLINK", *page)

        return sum(int(r) for r in self._io.run(send))

    def ready(self) -> bool:
        """Every master answers ``PING``."""
        try:
            return bool(self._cluster.ping(target_nodes=RedisCluster.PRIMARIES))
        except (redis.RedisError, RedisClusterException) as exc:
            logger.warning("feature store %s is not ready: %s", self._where, exc)
            return False

    def close(self) -> None:
        self._io.close()


def _order(batch: Journal) -> list[tuple[int, int]]:
    return batch.offsets
