"""What the Redis Cluster feature store promises beyond the FeatureStore contract, on a real
3-master Cluster with a replica each: keys spread over every master, scripts that touch only
the keys they declare, batches interrupted half way finished and never counted twice,
concurrent writers, landmark moves, per-group caps, and a master lost mid-stream."""

from __future__ import annotations

import random
import re
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import redis

from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.redis_cluster import JournalError, RedisClusterFeatureStore
from reco.adapters.redis_cluster_client import parse_cluster_url, redacted_cluster_url
from reco.adapters.redis_journal import Journal, Limits, journal
from reco.adapters.redis_keys import ClusterKeys
from reco.exceptions import BackendUnavailable, ConfigError
from reco.local.redis_cluster import RedisClusterNode, RedisClusterServer
from reco.ports import ApplyOutcome
from reco.signals import FeatureDelta, SessionState, UserProfile
from tests.adapters.test_redis_features import (
    _assert_close,
    _busy_delta,
    _chained,
    _inputs,
    _random_delta,
    _requests,
    _states,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

GROUPS = 64
# List caps small enough to trim; sessions and dedupe ids never dropped, since the Cluster
# caps them per group and the in-memory store over all.
CAPS: dict[str, Any] = {
    "max_related_per_item": 4,
    "max_popular": 4,
    "max_sessions": 100_000,
    "dedupe_window": 100_000,
}


def open_store(cluster: RedisClusterServer, **overrides: Any) -> RedisClusterFeatureStore:
    return RedisClusterFeatureStore.from_url(
        cluster.url, slot_groups=GROUPS, **{**CAPS, **overrides}
    )


@pytest.fixture
def store(redis_cluster: RedisClusterServer) -> Iterator[RedisClusterFeatureStore]:
    s = open_store(redis_cluster)
    yield s
    s.close()


class Killed(BackendUnavailable):
    """The test's stand-in for a processor killed in the middle of a batch."""


class Crashing(RedisClusterFeatureStore):
    """A store whose process "dies" after journaling a batch (step a) and writing
    ``groups`` of its slot groups' parts (step b): the rest and the journal's removal never
    happen. The part it writes goes through the store's own code. With ``groups`` None it
    is the store it was (a zombie waking up)."""

    groups: int | None = 0

    def _write_groups(self, batch: Journal) -> dict[int, list[str]]:
        if self.groups is None:
            return super()._write_groups(batch)
        partial = Journal(batch.batch, batch.landmark, batch.offsets, batch.writes[: self.groups])
        super()._write_groups(partial)
        raise Killed(f"killed after {self.groups} of {len(batch.writes)} groups")


def crashing(cluster: RedisClusterServer, groups: int) -> Crashing:
    s = Crashing.from_url(cluster.url, slot_groups=GROUPS, **CAPS)
    s.groups = groups
    return s


def _big_delta(offset: int, landmark: float = 0.0, *, seed: int = 1) -> FeatureDelta:
    """Many items, users, sessions and event ids: a batch that writes to most groups."""
    rng = random.Random(seed * 1000 + offset)
    d = FeatureDelta(landmark=landmark)
    d.offsets = {0: offset}
    items = [f"item-{n}" for n in range(60)]
    for _ in range(150):
        a, b = rng.sample(items, 2)
        d.coview[a][b] += rng.random() * 4
        d.sequence[a][b] += rng.random()
        d.popularity[a] += rng.random() * 3
        d.category_popularity[f"cat-{rng.randrange(5)}"][a] += rng.random()
    for n in range(30):
        user, session = f"user-{n}", f"session-{n}"
        seen = rng.sample(items, 3)
        d.profiles[user] = UserProfile(user, float(offset), session, offset, [(seen[0], 1.0, 1.0)])
        d.sessions[session] = SessionState(session, user, seen, float(offset))
        for item in seen:
            d.neighbour_index[item][session] = float(offset)
    d.event_ids = [f"event-{offset}-{n}" for n in range(40)]
    d.events = 40
    return d


# -- layout ----------------------------------------------------------------------------------
def test_a_batchs_keys_spread_over_every_master_by_their_ids(
    store: RedisClusterFeatureStore, redis_cluster: RedisClusterServer
) -> None:
    _chained(store, _big_delta(1))
    keys = ClusterKeys("reco:", GROUPS)
    held: dict[int, list[str]] = {}
    for master in redis_cluster.masters():
        with master.client() as client:
            held[master.port] = list(client.scan_iter(count=1000))
            for key in held[master.port]:
                group = re.match(r"reco:\{(\w+)\}:", key)
                assert group, key
                assert client.cluster("keyslot", key) == client.cluster(
                    "keyslot", "{" + group[1] + "}"
                ), f"{key} is hashed by its group's tag"
    assert len(held) == 3
    assert all(len(names) > 20 for names in held.values()), {p: len(n) for p, n in held.items()}
    everything = {key for names in held.values() for key in names}
    for user in ("user-0", "user-7"):
        assert f"reco:{{{zlib.crc32(user.encode()) % GROUPS}}}:user:{user}" in everything
    assert keys.coview("item-3") in everything
    assert keys.popular() in everything
    assert store.applied_offsets() == {0: 1}


def test_a_prefix_with_a_brace_is_refused(redis_cluster: RedisClusterServer) -> None:
    with pytest.raises(ConfigError, match="brace"):
        RedisClusterFeatureStore.from_url(redis_cluster.url, prefix="{reco}:")


def test_cluster_urls() -> None:
    nodes, options = parse_cluster_url("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001/0")
    assert nodes == [("10.0.0.1", 7000), ("::1", 7001)]
    assert options == {"username": "u", "password": "p@ss"}
    assert parse_cluster_url("rediss+cluster://h:1")[1] == {"ssl": True}
    assert (
        redacted_cluster_url("redis+cluster://u:secret@h:1,h:2") == "redis+cluster://u:***@h:1,h:2"
    )
    for bad in ("redis+cluster://h", "redis+cluster://h:1/3", "redis://h:1"):
        with pytest.raises(ConfigError):
            parse_cluster_url(bad)


# -- scripts touch only declared keys ----------------------------------------------------------
def _unquote(arg: str) -> str:
    return re.sub(r"\\(x[0-9a-f]{2}|.)", lambda m: _escapes(m[1]), arg)


def _escapes(code: str) -> str:
    if code.startswith("x") and len(code) == 3:
        return chr(int(code[1:], 16))
    return {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b"}.get(code, code)


def _monitor_args(line: str) -> tuple[str, list[str]]:
    """(client, args) of a raw MONITOR line: ``<time> [<db> <client>] "arg" "arg" ...``."""
    head, _, rest = line.partition("] ")
    client = head.split(" ", 2)[2]
    return client, [_unquote(a) for a in re.findall(r'"((?:[^"\\]|\\.)*)"', rest)]


@contextmanager
def scripts_run(cluster: RedisClusterServer) -> Iterator[list[tuple[list[str], list[list[str]]]]]:
    """Every script the masters ran while the block ran: its declared keys, and the
    commands it issued. Filled when the block exits."""
    seen: list[tuple[list[str], list[list[str]]]] = []
    marker = f"end-{uuid.uuid4().hex}"
    lines: dict[int, list[str]] = {}
    masters = cluster.masters()
    monitors = []
    for master in masters:
        monitor = master.client(timeout_s=30).monitor()
        monitor.__enter__()
        monitors.append((master, monitor))
    yield seen
    for master, monitor in monitors:
        with master.client() as client:
            client.echo(marker)
        got = lines.setdefault(master.port, [])
        while True:
            raw = monitor.connection.read_response()
            line = raw.decode() if isinstance(raw, bytes) else str(raw)
            if f'"ECHO" "{marker}"' in line:
                break
            got.append(line)
        monitor.__exit__(None, None, None)
    for got in lines.values():
        current: tuple[list[str], list[list[str]]] | None = None
        for line in got:
            client, args = _monitor_args(line)
            if client == "lua":
                assert current is not None, line
                current[1].append(args)
            elif args and args[0].upper() in ("EVALSHA", "EVAL"):
                current = (args[3 : 3 + int(args[2])], [])
                seen.append(current)
            else:
                current = None


def test_no_script_touches_a_key_it_did_not_declare(
    redis_cluster: RedisClusterServer, store: RedisClusterFeatureStore
) -> None:
    """Watched on every master: each key each script's commands name (as COMMAND GETKEYS
    finds them) is among the script's KEYS; through batches, a batch interrupted and
    finished by another store, dropped sessions, a landmark move and a reset."""
    small = open_store(redis_cluster, max_sessions=GROUPS)  # one session per group
    interrupted = crashing(redis_cluster, groups=5)
    with scripts_run(redis_cluster) as seen:
        _chained(store, _big_delta(1))
        with pytest.raises(Killed):
            _chained(interrupted, _big_delta(2))
        _chained(small, _big_delta(3))  # finishes batch 2 first; drops sessions
        store.rescale(1000.0, 0.5, 0.25, from_landmark=0.0)
        _chained(store, _big_delta(4, landmark=1000.0))
        store.reset()
    assert len(seen) > 200
    names = {args[0].upper() for _, commands in seen for args in commands}
    assert {"ZINCRBY", "HSET", "ZPOPMIN", "SADD", "DEL", "ZUNIONSTORE", "INCRBY"} <= names
    node = redis_cluster.masters()[0]
    with node.client() as client:
        # COMMAND GETKEYS's reply as Redis sends it (redis-py parses it as COMMAND's).
        client.set_response_callback("COMMAND", lambda response, **_: response)
        for declared, commands in seen:
            for args in commands:
                touched = (
                    client.execute_command("COMMAND", "GETKEYS", *args) if _keyed(args) else []
                )
                assert set(touched) <= set(declared), (args, declared)
    for s in (small, interrupted):
        s.close()


def _keyed(args: list[str]) -> bool:
    return args[0].upper() not in ("ECHO", "PING")


def test_every_key_a_journal_names_is_declared() -> None:
    """The payload names keys by their index in KEYS only: each index is in range, and the
    keys a write declares are its group's own."""
    keys = ClusterKeys("reco:", GROUPS)
    limits = Limits(4, 4, 3, 10, 60, 60, 1.25, 3)
    batch = journal(_big_delta(1), keys, limits)
    assert len(batch.writes) > GROUPS // 2
    for write in batch.writes:
        payload = orjson.loads(write.args[0])
        indexes = {1, 2}
        for op in ("coview", "sequence", "popularity", "index", "users", "states"):
            indexes.update(entry[0] for entry in payload[op])
        indexes.update(payload[k] for k in ("clock", "sessions", "dropped", "seen") if k in payload)
        assert indexes <= set(range(1, len(write.keys) + 1))
        parsed = [keys.parse(k) for k in write.keys]
        assert {p[0] if p else None for p in parsed} == {write.group}, "its group's keys only"
        blobs = [entry[2] for op in ("users", "states") for entry in payload[op]]
        assert sorted(blobs) == list(range(2, len(write.args) + 1))
    assert Journal.loads(batch.dumps()) == batch


# -- interrupted batches ----------------------------------------------------------------------
@pytest.mark.parametrize("groups_written", [0, 1, 17])
def test_a_batch_interrupted_after_its_journal_is_finished_by_the_next_store(
    redis_cluster: RedisClusterServer, groups_written: int
) -> None:
    reference = MemoryFeatureStore(**CAPS)
    first = open_store(redis_cluster)
    _chained(first, _big_delta(1))
    _chained(reference, _big_delta(1))
    first.close()

    dying = crashing(redis_cluster, groups=groups_written)
    with pytest.raises(Killed):
        _chained(dying, _big_delta(2))
    _chained(reference, _big_delta(2))

    successor = open_store(redis_cluster)
    try:
        assert successor.applied_offsets() == {0: 2}, "the journaled batch counts as applied"
        _assert_close(successor.snapshot(), reference.snapshot())
        assert successor.unseen(["event-2-3", "new"]) == {"new"}
        again = _big_delta(2)
        again.base_offsets = {0: 1}
        assert successor.apply(again) is ApplyOutcome.STALE, "a replay after it is refused"
        _chained(successor, _big_delta(3))
        _chained(reference, _big_delta(3))
        _assert_close(successor.snapshot(), reference.snapshot())
    finally:
        successor.close()
        dying.close()


def test_a_zombies_late_group_writes_are_skipped(redis_cluster: RedisClusterServer) -> None:
    """A processor journals a batch and stalls before writing its groups; another finishes
    the batch and applies the next; the stalled one wakes and writes its groups: nothing
    is counted twice."""
    reference = MemoryFeatureStore(**CAPS)
    zombie = crashing(redis_cluster, groups=0)
    with pytest.raises(Killed):
        _chained(zombie, _big_delta(1))
    late = journal(_big_delta(1), zombie._keys, zombie._limits)
    successor = open_store(redis_cluster)
    try:
        for offset in (1, 2):
            if offset > 1:
                _chained(successor, _big_delta(offset))
            _chained(reference, _big_delta(offset))
        zombie.groups = None  # it wakes up, and writes its groups
        zombie._finish(late)
        _assert_close(successor.snapshot(), reference.snapshot())
    finally:
        successor.close()
        zombie.close()


def _partition_delta(rng: random.Random, partition: int, offset: int) -> FeatureDelta:
    """A batch of ``partition``: its own users and sessions (Kafka keys messages by user),
    items shared with every other partition."""
    d = FeatureDelta(landmark=0.0)
    d.offsets = {partition: offset}
    items = [f"i{n}" for n in range(15)]
    for _ in range(rng.randrange(1, 12)):
        a, b = rng.sample(items, 2)
        d.coview[a][b] += rng.random()
        d.sequence[b][a] += rng.random()
        d.popularity[a] += rng.random()
        d.category_popularity[f"c{rng.randrange(3)}"][a] += rng.random()
    for _ in range(rng.randrange(3)):
        user = f"u{partition}-{rng.randrange(5)}"
        session = f"s{partition}-{rng.randrange(8)}"
        d.profiles[user] = UserProfile(user, float(offset), session, offset, [(items[0], 1.0, 1.0)])
        d.sessions[session] = SessionState(session, user, rng.sample(items, 3), float(offset))
        d.neighbour_index[items[1]][session] = float(offset)
    d.event_ids = [f"e{partition}-{offset}-{n}" for n in range(rng.randrange(4))]
    return d


def test_two_stores_applying_at_once_end_as_one_store_would(
    redis_cluster: RedisClusterServer,
) -> None:
    """Two processors, each on its own partitions, write the same items' lists at once."""
    caps = {**CAPS, "max_related_per_item": 1000, "max_popular": 1000}  # no order-dependent trim
    reference = MemoryFeatureStore(**caps)
    stores = [open_store(redis_cluster, **caps) for _ in range(2)]
    batches = {p: [_partition_delta(random.Random(p), p, n) for n in range(1, 41)] for p in (0, 1)}
    failures: list[BaseException] = []

    def run(partition: int) -> None:
        try:
            for d in batches[partition]:
                d.base_offsets = (
                    {partition: d.offsets[partition] - 1} if d.offsets[partition] > 1 else {}
                )
                assert stores[partition].apply(d) is ApplyOutcome.APPLIED
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    for n in range(40):
        for p in (0, 1):
            d = batches[p][n]
            assert reference.apply(d) is ApplyOutcome.APPLIED
    try:
        _assert_close(stores[0].snapshot(), reference.snapshot())
    finally:
        for s in stores:
            s.close()


# -- landmark moves ---------------------------------------------------------------------------
def test_a_move_finishes_a_journal_left_pending_first(redis_cluster: RedisClusterServer) -> None:
    reference = MemoryFeatureStore(**CAPS)
    dying = crashing(redis_cluster, groups=3)
    with pytest.raises(Killed):
        _chained(dying, _big_delta(1))
    _chained(reference, _big_delta(1))
    mover = open_store(redis_cluster)
    try:
        mover.rescale(500.0, 0.5, 0.25, from_landmark=0.0)
        reference.rescale(500.0, 0.5, 0.25, from_landmark=0.0)
        assert mover.landmark() == 500.0
        _assert_close(mover.snapshot(), reference.snapshot())
        stale = _big_delta(2, landmark=0.0)
        stale.base_offsets = {0: 1}
        assert mover.apply(stale) is ApplyOutcome.OTHER_LANDMARK
        _chained(mover, _big_delta(2, landmark=500.0))
        _chained(reference, _big_delta(2, landmark=500.0))
        _assert_close(mover.snapshot(), reference.snapshot())
    finally:
        mover.close()
        dying.close()


def test_a_payload_folded_before_a_move_is_scaled_on_arrival(
    store: RedisClusterFeatureStore,
) -> None:
    """The last resort of a group: a part of a batch folded against the landmark the group
    moved from (which the order of a move should never let happen) is scaled by the move's
    factors, not refused and not added as it is."""
    reference = MemoryFeatureStore(**CAPS)
    _chained(store, _big_delta(1))
    _chained(reference, _big_delta(1))
    late = _big_delta(2, seed=7)
    late.offsets = {5: 1}
    _chained(reference, late)
    store.rescale(500.0, 0.5, 0.25)
    reference.rescale(500.0, 0.5, 0.25)
    batch = journal(late, store._keys, store._limits)
    store._finish(batch)  # its groups, never journaled
    snapshot = store.snapshot()
    snapshot["offsets"] = reference.snapshot()["offsets"]  # the meta offsets never saw it
    _assert_close(snapshot, reference.snapshot())


def test_a_group_at_an_unknown_landmark_refuses_loudly(store: RedisClusterFeatureStore) -> None:
    _chained(store, _big_delta(1))
    stray = _big_delta(2, landmark=77.0)
    stray.offsets = {6: 1}
    batch = journal(stray, store._keys, store._limits)
    with pytest.raises(JournalError, match="landmark"):
        store._finish(batch)


def test_a_move_left_by_its_mover_is_finished_by_the_next_recovery(
    redis_cluster: RedisClusterServer, store: RedisClusterFeatureStore
) -> None:
    reference = MemoryFeatureStore(**CAPS)
    _chained(store, _big_delta(1))
    _chained(reference, _big_delta(1))

    class DiesMoving(RedisClusterFeatureStore):
        def _lists_by_group(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
            raise Killed("killed while moving the landmark")

    mover = DiesMoving.from_url(redis_cluster.url, slot_groups=GROUPS, **CAPS)
    mover._lease_ms = 1  # it lapses at once
    with pytest.raises(Killed):
        mover.rescale(500.0, 0.5, 0.25, from_landmark=0.0)
    mover.close()
    reference.rescale(500.0, 0.5, 0.25)
    waiting = _big_delta(2, landmark=500.0)
    waiting.base_offsets = {0: 1}
    assert store.apply(waiting) is ApplyOutcome.OTHER_LANDMARK, (
        "nothing is journaled while the move is not done"
    )
    assert store.applied_offsets() == {0: 1}  # the processor's resume: it finishes the move
    _assert_close(store.snapshot(), reference.snapshot())
    _chained(store, _big_delta(2, landmark=500.0))
    _chained(reference, _big_delta(2, landmark=500.0))
    _assert_close(store.snapshot(), reference.snapshot())


# -- caps -------------------------------------------------------------------------------------
def test_sessions_are_capped_per_group_and_dropped_ones_are_gone(
    redis_cluster: RedisClusterServer,
) -> None:
    keys = ClusterKeys("reco:", GROUPS)
    store = open_store(redis_cluster, max_sessions=2 * GROUPS)  # two per group
    same_group = [s for s in (f"s{n}" for n in range(2000)) if keys.group_of(s) == 5][:4]
    try:
        for n, session in enumerate(same_group):
            d = FeatureDelta(landmark=0.0)
            d.sessions[session] = SessionState(session, "u", ["a"], float(n))
            _chained(store, d)
        _, states = store.load_states([], same_group)
        assert set(states) == set(same_group[2:]), "the group's two most recent"
        assert set(store.snapshot()["sessions"]) == set(same_group[2:])
        with redis_cluster.client() as client:
            assert not client.exists(keys.session(same_group[0]))
            assert not client.smembers(keys.dropped(5)), "swept"
    finally:
        store.close()


# -- equivalence ------------------------------------------------------------------------------
def test_same_batches_give_the_same_features_as_the_memory_store(
    store: RedisClusterFeatureStore,
) -> None:
    rng = random.Random(2024)
    memory = MemoryFeatureStore(**CAPS)
    landmark = 0.0
    for offset in range(1, 61):
        if offset == 30:
            landmark = 3600.0
            for s in (store, memory):
                s.rescale(landmark, 0.5, 0.25)
        d = _random_delta(rng, offset, landmark)
        ids = [*d.event_ids, "fresh"]
        assert store.unseen(ids) == memory.unseen(ids)
        users, sessions = list(d.profiles), list(d.sessions)
        assert _states(store.load_states(users, sessions)) == _states(
            memory.load_states(users, sessions)
        )
        _chained(store, d)
        _chained(memory, d)
        for kw in _requests(rng):
            _assert_close(_inputs(store, **kw), _inputs(memory, **kw))
    _assert_close(store.snapshot(), memory.snapshot())
    assert store.landmark() == memory.landmark() == landmark


def test_a_recommendation_reads_in_three_round_trips(store: RedisClusterFeatureStore) -> None:
    _chained(store, _busy_delta(1))
    sent: list[int] = []
    execute = redis.cluster.ClusterPipeline.execute

    def counted(self: redis.cluster.ClusterPipeline, *args: Any, **kw: Any) -> Any:
        sent.append(len(self))
        return execute(self, *args, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.cluster.ClusterPipeline, "execute", counted)
        inputs = _inputs(store, user_id="u", category="c", neighbour_sample=50, neighbour_k=10)
    assert len(sent) <= 3, sent
    assert inputs.context
    assert inputs.popular


# -- failover ---------------------------------------------------------------------------------
def _meta_master(cluster: RedisClusterServer) -> RedisClusterNode:
    with cluster.masters()[0].client() as client:
        slot = int(client.cluster("keyslot", "reco:{m}:offsets"))
    return cluster.master_of(slot)


@pytest.mark.parametrize("which", ["meta", "other"])
def test_a_master_killed_mid_stream_loses_nothing(
    redis_cluster: RedisClusterServer, which: str
) -> None:
    """A writer applies batches as the processor does (on BackendUnavailable: re-read the
    store's offsets, skip what they cover, retry the rest) while a master is SIGKILLed
    (the meta slot's, or another) and its replica promoted: every batch counts once."""
    store = open_store(redis_cluster, socket_timeout_s=1.0)
    errors: list[str] = []
    applied: list[int] = []
    stop = threading.Event()

    def write() -> None:
        offset = 1
        while not stop.is_set():
            try:
                stored = store.applied_offsets()
                if stored.get(0, 0) >= offset:
                    applied.append(offset)  # its journal was finished by the resume
                    offset += 1
                    continue
                d = _big_delta(offset, seed=3)
                d.base_offsets = {0: stored[0]} if 0 in stored else {}
                assert store.apply(d) is ApplyOutcome.APPLIED
                applied.append(offset)
                offset += 1
            except BackendUnavailable as exc:
                errors.append(str(exc))
                stop.wait(0.05)  # the processor's backoff, shortened

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(applied) >= 10, timeout_s=60)
        meta = _meta_master(redis_cluster)
        victim = (
            meta if which == "meta" else next(m for m in redis_cluster.masters() if m is not meta)
        )
        redis_cluster.kill_master(victim)
        redis_cluster.restart(victim)
        resumed = len(applied)
        wait_until(lambda: len(applied) >= resumed + 10, timeout_s=60)
    finally:
        stop.set()
        writer.join(60)
    assert errors, "the writer met the failover"
    reference = MemoryFeatureStore(**CAPS)
    for offset in applied:
        _chained(reference, _big_delta(offset, seed=3))
    try:
        _assert_close(store.snapshot(), reference.snapshot())
    finally:
        store.close()


def test_a_store_idle_through_a_failover_writes_on(redis_cluster: RedisClusterServer) -> None:
    """A store that sent nothing while a master was replaced and came back as a replica
    still maps the old master's slots to it: its next batch follows the redirections, and
    the WAIT it sends to the node now a replica (which refuses it) fails nothing."""
    reference = MemoryFeatureStore(**CAPS)
    store = open_store(redis_cluster)
    try:
        _chained(store, _big_delta(1))
        _chained(reference, _big_delta(1))
        victim = _meta_master(redis_cluster)
        redis_cluster.kill_master(victim)
        redis_cluster.restart(victim)
        for offset in (2, 3):
            d = _big_delta(offset)
            d.base_offsets = {0: offset - 1}
            assert store.apply(d) is ApplyOutcome.APPLIED
            _chained(reference, _big_delta(offset))
        _assert_close(store.snapshot(), reference.snapshot())
    finally:
        store.close()
