"""The feature store on a Redis that Sentinel watches (a master, its replica, three
Sentinels, all real): the URL, and a master SIGKILLed while batches are applied. The
FeatureStore contract suite runs on it too (``tests/adapters/conftest.py``)."""

from __future__ import annotations

import threading

import pytest

from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.redis_features import RedisFeatureStore
from reco.adapters.redis_sentinel import parse_sentinel_url, redacted_url
from reco.exceptions import BackendUnavailable, ConfigError
from reco.local.redis_sentinel import RedisSentinelServer
from reco.ports import ApplyOutcome
from tests.adapters.test_redis_cluster import CAPS, _big_delta
from tests.adapters.test_redis_features import _assert_close, _chained
from tests.conftest import wait_until


def test_sentinel_urls() -> None:
    sentinels, service, options, own = parse_sentinel_url(
        "redis+sentinel://u:p%40ss@10.0.0.1:26379,[::1]:26380/shop/2"
        "?sentinel_password=s3cret&sentinel_username=watcher"
    )
    assert sentinels == [("10.0.0.1", 26379), ("::1", 26380)]
    assert service == "shop"
    assert options == {"username": "u", "password": "p@ss", "db": 2}
    assert own == {"password": "s3cret", "username": "watcher"}
    assert parse_sentinel_url("rediss+sentinel://h:1/shop")[2] == {"db": 0, "ssl": True}
    assert (
        redacted_url("redis+sentinel://u:secret@h:1,h:2/shop?sentinel_password=x")
        == "redis+sentinel://u:***@h:1,h:2/shop?sentinel_password=***"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h:26379", "name the master"),
        ("redis+sentinel://h:26379/shop/x", "database after the service"),
        ("redis+sentinel://h/shop", "host:port"),
        ("redis+sentinel://h:1/shop?timeout=3", "unknown option 'timeout'"),
        ("redis://h:1/0", "not a Redis Sentinel URL"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_sentinel_url(url)


@pytest.mark.integration
def test_a_master_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    redis_sentinel: RedisSentinelServer,
) -> None:
    """A writer applies batches as the processor does while the master is SIGKILLed and the
    Sentinels promote its replica. Replication is asynchronous, so the replica may lack the
    last batches: the store then says it is behind (``RESET``) and the writer, like the
    processor, goes back to the offsets the store holds and applies the rest again. The
    store ends holding exactly the batches its offsets name, each once."""
    store = RedisFeatureStore.from_url(redis_sentinel.url, socket_timeout_s=1.0, **CAPS)
    errors: list[str] = []
    refused: list[ApplyOutcome] = []
    done: list[int] = []
    stop = threading.Event()

    def write() -> None:
        offset = 1
        while not stop.is_set():
            try:
                stored = store.applied_offsets().get(0, 0)
                if stored + 1 != offset:  # a batch lost with the master: apply it again
                    refused.append(ApplyOutcome.RESET)
                    offset = stored + 1
                d = _big_delta(offset, seed=5)
                d.base_offsets = {0: stored} if stored else {}
                outcome = store.apply(d)
                if outcome is ApplyOutcome.APPLIED:
                    done.append(offset)
                    offset += 1
                else:
                    refused.append(outcome)
            except BackendUnavailable as exc:
                errors.append(str(exc))
                stop.wait(0.05)  # the processor's backoff, shortened

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: len(done) >= 10, timeout_s=60)
        promoted = redis_sentinel.kill_master()
        redis_sentinel.restart()
        resumed = len(done)
        wait_until(lambda: len(done) >= resumed + 10, timeout_s=60)
    finally:
        stop.set()
        writer.join(60)
    assert errors, "the writer met the failover"
    assert redis_sentinel.master() is promoted
    last = store.applied_offsets()[0]
    assert last >= max(done) - 1  # at most the batch in flight at the stop is not stored
    reference = MemoryFeatureStore(**CAPS)
    for offset in range(1, last + 1):
        _chained(reference, _big_delta(offset, seed=5))
    try:
        _assert_close(store.snapshot(), reference.snapshot())
    finally:
        store.close()


@pytest.mark.integration
def test_a_store_idle_through_a_failover_writes_on(redis_sentinel: RedisSentinelServer) -> None:
    """A store whose connections were to the old master reaches the promoted one on its
    next call, and the scripts the new master never loaded are loaded there."""
    reference = MemoryFeatureStore(**CAPS)
    store = RedisFeatureStore.from_url(redis_sentinel.url, **CAPS)
    try:
        _chained(store, _big_delta(1))
        _chained(reference, _big_delta(1))
        redis_sentinel.wait_healthy()  # the replica holds batch 1
        redis_sentinel.kill_master()
        redis_sentinel.restart()
        for offset in (2, 3):
            _chained(store, _big_delta(offset))
            _chained(reference, _big_delta(offset))
        _assert_close(store.snapshot(), reference.snapshot())
    finally:
        store.close()
