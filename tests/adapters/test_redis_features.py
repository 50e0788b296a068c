"""What the Redis feature store promises beyond the FeatureStore contract: its round trips,
its refusal of stale batches, its TTLs and caps, exact floats, and equivalence with the
in-memory store on the same stream of batches."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.redis_features import (
    PROFILE_TTL_S,
    SESSION_TTL_S,
    TRIM_SLACK,
    RedisFeatureStore,
)
from reco.adapters.redis_keys import COVIEW, SEQUENCE, RedisKeys
from reco.exceptions import BackendUnavailable
from reco.local.servers import RedisServer, free_port
from reco.ports import ApplyOutcome, FeatureStore, RecoInputs
from reco.signals import FeatureDelta, SessionState, UserProfile

pytestmark = pytest.mark.integration

CAPS: dict[str, Any] = {
    "max_related_per_item": 4,
    "max_popular": 4,
    "max_sessions": 3,
    "dedupe_window": 10,
}


@pytest.fixture
def store(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[RedisFeatureStore]:
    s = RedisFeatureStore.from_url(redis_server.url, **CAPS)
    yield s
    s.close()


def _delta(landmark: float = 0.0, **offsets: int) -> FeatureDelta:
    d = FeatureDelta(landmark=landmark)
    d.offsets = {int(k[1:]): v for k, v in offsets.items()}
    return d


def _chained(store: FeatureStore, delta: FeatureDelta) -> ApplyOutcome:
    """Apply ``delta`` as the next batch: based on where ``store`` is now."""
    stored = store.applied_offsets()
    delta.base_offsets = {p: stored[p] for p in delta.offsets if p in stored}
    outcome = store.apply(delta)
    assert outcome is ApplyOutcome.APPLIED
    return outcome


def _busy_delta(offset: int) -> FeatureDelta:
    d = _delta(p0=offset)
    for n in range(20):
        d.coview[f"i{n}"][f"i{n + 1}"] += 1.5
        d.sequence[f"i{n}"][f"i{n + 1}"] += 0.5
        d.popularity[f"i{n}"] += 2.0
        d.category_popularity["c"][f"i{n}"] += 2.0
    d.profiles["u"] = UserProfile("u", 1.0, "s", 1, [("i1", 1.0, 1.0)])
    d.sessions["s"] = SessionState("s", "u", ["i0", "i1"], 1.0)
    d.event_ids = [f"e{offset}-{n}" for n in range(20)]
    d.events = 20
    return d


def _inputs(store: FeatureStore, **kw: Any) -> RecoInputs:
    args: dict[str, Any] = {
        "user_id": None,
        "session_id": None,
        "context_items": 10,
        "related_per_item": 10,
        "popular": 10,
        "category": None,
    }
    args.update(kw)
    return store.recommendation_inputs(**args)


@contextmanager
def commands_sent(server: RedisServer, *, full: bool = False) -> Iterator[list[str]]:
    """Commands Redis received from clients while the block ran (those that scripts issue
    are left out), seen through MONITOR: their names, or whole (``full``). The list is filled
    when the block exits."""
    received: list[str] = []
    marker = f"end-{uuid.uuid4().hex}"
    watcher = redis.Redis.from_url(server.url, decode_responses=True)
    signaller = redis.Redis.from_url(server.url, decode_responses=True)
    signaller.ping()  # connects now: its handshake must not show up in the list
    with watcher.monitor() as monitor:  # type: ignore[no-untyped-call]
        yield received
        signaller.echo(marker)
        for entry in monitor.listen():
            if entry["command"] == f"ECHO {marker}":
                break
            if entry["client_type"] != "lua":
                command = entry["command"]
                received.append(command if full else command.split(" ", 1)[0].upper())
    watcher.close()
    signaller.close()


def _warm(store: RedisFeatureStore) -> None:
    """Connect and load every script, so that what follows is the steady state."""
    _chained(store, _delta())
    store.load_states(["u"], ["s"])
    store.unseen(["e"])
    _inputs(store, user_id="u")
    store.rescale(0.0, 1.0, 1.0)


# -- round trips ---------------------------------------------------------------------------
def test_apply_is_one_round_trip(store: RedisFeatureStore, redis_server: RedisServer) -> None:
    _warm(store)
    with commands_sent(redis_server) as sent:
        assert store.apply(_busy_delta(offset=1)) is ApplyOutcome.APPLIED
    assert sent == ["EVALSHA"]
    assert store.related("i0", 5).coview == [("i1", 1.5)], "the batch was applied"


@contextmanager
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many commands each round trip sent while the block ran: a pipeline is one round
    trip, a command sent on its own is one too."""
    sent: list[int] = []
    execute, command = redis.client.Pipeline.execute, redis.Redis.execute_command

    def counted_execute(self: redis.client.Pipeline, *args: Any, **kw: Any) -> Any:
        sent.append(len(self))
        return execute(self, *args, **kw)

    def counted_command(self: redis.Redis, *args: Any, **kw: Any) -> Any:
        sent.append(1)
        return command(self, *args, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute", counted_execute)
        patch.setattr(redis.Redis, "execute_command", counted_command)
        yield sent


def _commands(lines: list[str]) -> list[str]:
    return [line.split(" ", 1)[0] for line in lines]


def _neighbourly(store: RedisFeatureStore) -> None:
    """The busy batch, and a second session sharing items with ``s`` (a neighbour)."""
    _chained(store, _busy_delta(offset=1))
    other = _delta(p0=2)
    other.sessions["t"] = SessionState("t", "v", ["i1", "i7"], 2.0)
    other.neighbour_index["i1"]["t"] = other.neighbour_index["i7"]["t"] = 2.0
    other.neighbour_index["i0"]["s"] = other.neighbour_index["i1"]["s"] = 1.0
    _chained(store, other)


@pytest.mark.parametrize("by", ["user_id", "session_id"])
def test_a_recommendation_is_bounded_reads_in_three_round_trips(
    store: RedisFeatureStore,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    by: str,
) -> None:
    """No script and no search in Redis: only reads of a few keys, each bounded (a range
    of at most the asked length), in at most three pipelines."""
    _warm(store)
    _neighbourly(store)
    subject = {by: "u" if by == "user_id" else "s"}
    with commands_sent(redis_server, full=True) as sent, round_trips(monkeypatch) as trips:
        inputs = _inputs(store, **subject, category="c", neighbour_sample=500, neighbour_k=100)
    assert len(trips) <= 3, trips
    assert set(_commands(sent)) <= {"GET", "HMGET", "ZREVRANGE", "HGET"}, sent
    bound = {"reco:nbr:": 100 - 1}  # neighbour_sessions_per_item, the store's default
    for line in sent:
        if line.startswith("ZREVRANGE"):
            key, start, stop = line.split(" ")[1:4]
            limit = next((b for p, b in bound.items() if key.strip('"').startswith(p)), 10 - 1)
            assert start == "0", line
            assert int(stop) <= limit, line
    assert inputs.context
    assert inputs.related
    assert inputs.popular
    assert inputs.version
    assert [item for item, _ in inputs.neighbours] == ["i1", "i7"]


@pytest.fixture
def replica(
    redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[tuple[RedisFeatureStore, RedisFeatureStore]]:
    """An api replica's store (the list cache on, 1 s) and the processor's (no cache), two
    instances on one Redis and prefix."""
    api = RedisFeatureStore.from_url(
        redis_server.url, list_cache_size=100, list_cache_ttl_s=1.0, **CAPS
    )
    writer = RedisFeatureStore.from_url(redis_server.url, **CAPS)
    yield api, writer
    writer.close()
    api.close()


def test_a_repeated_recommendation_reads_only_the_subject(
    replica: tuple[RedisFeatureStore, RedisFeatureStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the cache's TTL, the same subject unchanged costs Redis the landmark and the
    subject's hash: one round trip of two commands."""
    api, writer = replica
    _neighbourly(writer)
    first = _inputs(api, user_id="u", neighbour_sample=500, neighbour_k=100)
    with round_trips(monkeypatch) as trips:
        again = _inputs(api, user_id="u", neighbour_sample=500, neighbour_k=100)
    assert again == first
    assert trips == [2], "one pipeline: GET landmark, HMGET user"


def _coview_of(store: RedisFeatureStore, user: str, item: str) -> list[tuple[str, float]]:
    return _inputs(store, user_id=user).related[item].coview


def test_the_subjects_own_event_shows_at_once_other_changes_within_the_ttl(
    replica: tuple[RedisFeatureStore, RedisFeatureStore],
) -> None:
    """An api replica (``api``, cache on) and the processor (``writer``, another instance).
    The writer's batch that changes the user shows in the user's next response in full,
    lists included; one that changes only other shoppers' lists shows once the cached
    copy expired (at most the TTL), and not before that copy expired."""
    api, writer = replica
    _chained(writer, _busy_delta(offset=1))
    assert _coview_of(api, "u", "i1") == [("i2", 1.5)]

    own = _delta(p0=2)
    own.coview["i1"]["i9"] += 5.0
    own.profiles["u"] = UserProfile("u", 2.0, "s", 1, [("i1", 2.0, 1.0)])
    _chained(writer, own)
    assert _coview_of(api, "u", "i1") == [("i9", 5.0), ("i2", 1.5)], "own event: at once"

    others = _delta(p0=3)
    others.coview["i1"]["i8"] += 9.0
    read_at = time.monotonic()
    _chained(writer, others)
    stale = _coview_of(api, "u", "i1")
    if time.monotonic() - read_at < 0.9:  # the cached copy cannot have expired yet
        assert stale == [("i9", 5.0), ("i2", 1.5)], "served from the cache"
    deadline = time.monotonic() + 10
    while _coview_of(api, "u", "i1")[0] != ("i8", 9.0):
        assert time.monotonic() < deadline, "other shoppers' change never showed"
        time.sleep(0.05)


def test_a_rescale_empties_every_replicas_cache(
    replica: tuple[RedisFeatureStore, RedisFeatureStore],
) -> None:
    """Cached scores are relative to the landmark: once it moves, no replica mixes scales."""
    api, writer = replica
    _chained(writer, _busy_delta(offset=1))
    assert _coview_of(api, "u", "i1") == [("i2", 1.5)]
    writer.rescale(10.0, 0.5, 0.25)
    inputs = _inputs(api, user_id="u")
    assert inputs.related["i1"].coview == [("i2", 0.75)]
    assert inputs.popular[0][1] == 0.5


def test_neighbours_equal_the_memory_stores_at_scale(redis_server: RedisServer) -> None:
    """Thousands of sessions alive (the contract suite's cap keeps 3), long queries, the
    sample and k cutting through ties: the Redis store's reads give the neighbours the
    in-memory store's give."""
    caps: dict[str, Any] = {"max_sessions": 5000, "neighbour_sessions_per_item": 40}
    redis_store = RedisFeatureStore.from_url(redis_server.url, prefix="nb-scale:", **caps)
    memory = MemoryFeatureStore(**caps)
    rng = random.Random(11)
    items = [f"i{n}" for n in range(60)] + ["é", "ü"]
    try:
        for batch in range(20):
            d = _delta(p0=batch + 1)
            d.base_offsets = {0: batch} if batch else {}
            for n in range(100):
                sid = rng.choice(["s", "ß", "S", ""]) + str(rng.randrange(1500))
                picked = [
                    rng.choice(items[: rng.randint(3, 62)]) for _ in range(rng.randint(1, 12))
                ]
                d.sessions[sid] = SessionState(sid, "u", picked, float(batch * 10 + n % 7))
                for item in picked:
                    d.neighbour_index[item][sid] = float(batch * 10 + n % 7)
            assert redis_store.apply(d) is memory.apply(d) is ApplyOutcome.APPLIED
        for _ in range(50):
            query = [rng.choice(items) for _ in range(rng.randint(1, 30))]
            sample, k = rng.choice([5, 50, 500]), rng.choice([3, 20, 100])
            exclude = rng.choice([None, "s1", "ß2"])
            got = redis_store.neighbours(query, exclude=exclude, sample=sample, k=k)
            assert got
            assert got == memory.neighbours(query, exclude=exclude, sample=sample, k=k)
    finally:
        redis_store.reset()
        redis_store.close()


def test_load_states_and_unseen_are_one_round_trip_each(
    store: RedisFeatureStore, redis_server: RedisServer
) -> None:
    _warm(store)
    _chained(store, _busy_delta(offset=1))
    with commands_sent(redis_server) as sent:
        profiles, sessions = store.load_states(["u", "v"], ["t"])
        unseen = store.unseen(["e1-19", "new"])
    assert sent == ["EVALSHA", "ZMSCORE"]
    assert set(profiles) == {"u"}
    assert set(sessions) == {"s"}, "the user's current session comes along"
    assert unseen == {"new"}


# -- refused batches ----------------------------------------------------------------------
def test_a_refused_batch_changes_nothing(store: RedisFeatureStore) -> None:
    _chained(store, _busy_delta(offset=5))
    before = store.snapshot()
    version = _inputs(store, user_id="u").version

    for base, outcome in (({}, ApplyOutcome.STALE), ({0: 3}, ApplyOutcome.STALE)):
        stale = _busy_delta(9)
        stale.base_offsets = base
        stale.event_ids = ["never-applied"]
        assert store.apply(stale) is outcome
    lost = _busy_delta(9)
    lost.offsets = {1: 9}
    lost.base_offsets = {1: 4}
    assert store.apply(lost) is ApplyOutcome.RESET

    assert store.snapshot() == before
    assert _inputs(store, user_id="u").version == version
    assert store.unseen(["never-applied"]) == {"never-applied"}


def test_a_value_that_is_not_finite_is_refused_before_anything_is_written(
    store: RedisFeatureStore,
) -> None:
    d = _busy_delta(offset=1)
    d.coview["a"]["b"] = math.nan
    with pytest.raises(ValueError, match="finite"):
        _chained(store, d)
    assert store.applied_offsets() == {}
    assert store.popular(5) == []


# -- memory bounds -------------------------------------------------------------------------
def test_profiles_and_sessions_expire(store: RedisFeatureStore, redis_client: redis.Redis) -> None:
    _chained(store, _busy_delta(offset=1))
    keys = RedisKeys()
    assert PROFILE_TTL_S - 5 <= redis_client.ttl(keys.user("u")) <= PROFILE_TTL_S
    assert SESSION_TTL_S - 5 <= redis_client.ttl(keys.session("s")) <= SESSION_TTL_S
    redis_client.expire(keys.user("u"), 1)
    _chained(store, _busy_delta(offset=2))
    assert redis_client.ttl(keys.user("u")) >= PROFILE_TTL_S - 5, "every write renews it"


def test_caps_hold_after_many_batches(store: RedisFeatureStore, redis_client: redis.Redis) -> None:
    rng = random.Random(7)
    for offset in range(1, 61):
        _chained(store, _random_delta(rng, offset, landmark=0.0))
    keys = RedisKeys()
    lists = [
        *redis_client.scan_iter(keys.pattern(COVIEW)),
        *redis_client.scan_iter(keys.pattern(SEQUENCE)),
    ]
    assert lists
    related_cap = CAPS["max_related_per_item"] * TRIM_SLACK
    assert max(redis_client.zcard(k) for k in lists) <= related_cap
    assert redis_client.zcard(keys.popular()) <= CAPS["max_popular"] * TRIM_SLACK
    assert redis_client.zcard(keys.sessions) == CAPS["max_sessions"]
    assert len(list(redis_client.scan_iter(keys.session("*")))) == CAPS["max_sessions"]
    assert redis_client.zcard(keys.seen) == CAPS["dedupe_window"]


# -- floats and equivalence ------------------------------------------------------------------
def test_values_at_forward_decay_scale_are_exact(store: RedisFeatureStore) -> None:
    rng = random.Random(3)
    memory = MemoryFeatureStore(**CAPS)
    for offset in range(1, 4):
        d = _delta(p0=offset)
        for n in range(4):
            d.coview["a"][f"b{n}"] += rng.random() * math.exp2(rng.uniform(200, 256))
            d.popularity[f"b{n}"] += rng.random() * 1e77
        _chained(store, d)
        _chained(memory, d)
    assert store.snapshot() == memory.snapshot(), "bit for bit, not approximately"
    factor = math.exp2(-100 / 3)
    store.rescale(100.0, factor, factor)
    memory.rescale(100.0, factor, factor)
    assert store.snapshot() == memory.snapshot()


def test_same_batches_give_the_same_features_as_the_memory_store(
    store: RedisFeatureStore,
) -> None:
    rng = random.Random(2024)
    memory = MemoryFeatureStore(**CAPS)
    landmark = 0.0
    for offset in range(1, 81):
        if offset == 40:
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


def _states(loaded: tuple[dict[str, UserProfile], dict[str, SessionState]]) -> Any:
    profiles, sessions = loaded
    return (
        {k: v.to_dict() for k, v in profiles.items()},
        {k: v.to_dict() for k, v in sessions.items()},
    )


def _requests(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"user_id": f"u{rng.randrange(6)}"},
        {"session_id": f"s{rng.randrange(8)}", "category": f"c{rng.randrange(3)}"},
        {"user_id": "nobody", "related_per_item": 2, "popular": 3},
        {"user_id": f"u{rng.randrange(6)}", "context_items": 2},
    ]


def _random_delta(rng: random.Random, offset: int, landmark: float) -> FeatureDelta:
    """A batch of the shape the processor builds, over a small world so that lists fill,
    caps trim, sessions are evicted and event ids repeat."""
    d = FeatureDelta(landmark=landmark)
    d.offsets = dict.fromkeys(rng.sample(range(3), rng.randint(1, 3)), offset)

    def value() -> float:
        return rng.random() * math.exp2(rng.uniform(0, 250))

    def item() -> str:
        return f"i{rng.randrange(12)}"

    for _ in range(rng.randrange(15)):
        d.coview[item()][item()] += value()
        d.sequence[item()][item()] += value()
        it = item()
        d.popularity[it] += value()
        d.category_popularity[f"c{rng.randrange(3)}"][it] += value()
    for _ in range(rng.randrange(3)):
        user = f"u{rng.randrange(6)}"
        session = f"s{rng.randrange(8)}"
        recent = [(item(), rng.uniform(0, 1e9), rng.choice([1.0, 3.0, 5.0])) for _ in range(4)]
        recent = list({i: (i, t, w) for i, t, w in recent}.values())
        purchases = [item() for _ in range(rng.randrange(3))]
        d.profiles[user] = UserProfile(
            user, rng.uniform(0, 1e9), session, offset, recent, purchases
        )
        d.sessions[session] = SessionState(session, user, [item() for _ in range(5)], rng.random())
    d.event_ids = [f"e{rng.randrange(40)}" for _ in range(rng.randrange(6))]
    d.events = len(d.event_ids)
    return d


def _assert_close(actual: Any, expected: Any, path: str = "") -> None:
    """Equal, floats within 1e-12 relative (they are in fact exact), recursively."""
    if isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-12), path
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), path
        for key in expected:
            _assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), path
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_close(a, e, f"{path}[{n}]")
    elif hasattr(expected, "__slots__"):  # RecoInputs, Related
        assert type(actual) is type(expected), path
        _assert_close(_fields(actual), _fields(expected), path)
    else:
        assert actual == expected, path


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


# -- Redis-specific behaviour ----------------------------------------------------------------
def test_a_repeated_rescale_is_a_no_op(store: RedisFeatureStore) -> None:
    d = _delta()
    d.popularity["a"] += 8.0
    _chained(store, d)
    store.rescale(100.0, 0.5, 0.5)
    store.rescale(100.0, 0.5, 0.5)
    assert store.popular(1) == [("a", 4.0)]


def test_prefixes_keep_engines_apart(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    first = RedisFeatureStore.from_url(redis_server.url, prefix="a*[x]:")
    second = RedisFeatureStore.from_url(redis_server.url, prefix="a")
    try:
        d = _delta(p0=1)
        d.coview["b"]["c"] += 1.0
        _chained(first, d)
        _chained(second, d)
        first.rescale(10.0, 0.5, 0.5)
        assert first.related("b", 1).coview == [("c", 0.5)]
        assert second.related("b", 1).coview == [("c", 1.0)], "a glob in a prefix stays literal"
        assert list(second.snapshot()["coview"]) == ["b"]
        first.reset()
        assert not [k for k in redis_client.scan_iter() if k.startswith(b"a*[x]:")]
        assert second.related("b", 1).coview == [("c", 1.0)]
        assert second.applied_offsets() == {0: 1}
    finally:
        first.close()
        second.close()


def test_an_unreachable_redis_is_backend_unavailable() -> None:
    store = RedisFeatureStore.from_url(
        f"redis://:secret@127.0.0.1:{free_port()}/0", socket_timeout_s=0.5, retries=1
    )
    try:
        assert not store.ready()
        with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1") as caught:
            _inputs(store, user_id="u")
        assert "secret" not in str(caught.value)
    finally:
        store.close()


def test_a_long_script_running_is_backend_unavailable(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    """What the api sees while a rescale holds Redis past ``busy-reply-threshold``."""
    _inputs(store, user_id="u")
    threshold = str(redis_client.config_get("busy-reply-threshold")["busy-reply-threshold"])
    redis_client.config_set("busy-reply-threshold", 50)
    killed: list[redis.ResponseError] = []

    def run_forever() -> None:
        try:
            redis_client.eval("while true do end", 0)
        except redis.ResponseError as exc:
            killed.append(exc)

    spin = threading.Thread(target=run_forever)
    spin.start()
    try:
        time.sleep(0.2)
        with pytest.raises(BackendUnavailable, match="BUSY"):
            _inputs(store, user_id="u")
        assert not store.ready()
    finally:
        redis_client.script_kill()
        spin.join()
        redis_client.config_set("busy-reply-threshold", threshold)
    assert killed, "the script ran until SCRIPT KILL"
    assert store.ready()
