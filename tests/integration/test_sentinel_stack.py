"""The production shape on a Redis that Sentinel watches (a master, its replica, three
Sentinels): the master SIGKILLed while events stream in is replaced by its replica, the
processor and the api go on, and the end state is what one uninterrupted processor builds
from the topic (the replica may have missed the last batches, which Kafka still holds)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reco.local.redis_sentinel import RedisSentinelServer
from reco.local.servers import KafkaServer
from reco.local.stack import Stack, post_events
from tests.conftest import wait_until
from tests.integration.conftest import (
    applied_offsets,
    assert_matches_reference,
    drained,
    env_of,
    shop_events,
)
from tests.integration.test_cluster_stack import _personalised

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel_env(
    kafka_server: KafkaServer,
    redis_sentinel: RedisSentinelServer,
    pg_database: str,
    kafka_topic_factory: Callable[..., str],
) -> dict[str, str]:
    return env_of(kafka_server, redis_sentinel.url, pg_database, kafka_topic_factory)


@pytest.fixture
def sentinel_stack(sentinel_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "logs").mkdir()
    s = Stack(sentinel_env, tmp_path / "logs")
    try:
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


def test_the_master_killed_mid_stream_is_replaced_and_nothing_is_lost(
    sentinel_stack: Stack, sentinel_env: dict[str, str], redis_sentinel: RedisSentinelServer
) -> None:
    sentinel_stack.start("ingest", "processor", "api")
    api, ingest = sentinel_stack["api"].url, sentinel_stack["ingest"].url
    shop = shop_events(3000, seed=31)
    first = len(shop.events) // 3
    assert post_events(ingest, shop.events[:first]) == first
    wait_until(
        lambda: sentinel_stack["processor"].metric("events_processed_total") > 0,
        timeout_s=60,
        every_s=0.05,
    )

    sent: list[int] = []
    sender = threading.Thread(target=lambda: sent.append(post_events(ingest, shop.events[first:])))
    sender.start()
    applied_before = sum(applied_offsets(sentinel_env).values())
    try:
        redis_sentinel.kill_master()  # returns once the Sentinels promoted the replica
        wait_until(
            lambda: sum(applied_offsets(sentinel_env).values()) > applied_before + 100,
            timeout_s=120,
            every_s=0.2,
        )
        wait_until(lambda: _personalised(api, shop.events[0]["user_id"]), timeout_s=60)
    finally:
        sender.join()
    assert sent == [len(shop.events) - first]
    drained(sentinel_stack, len(shop.events))
    redis_sentinel.restart()  # the old master comes back empty, as the new one's replica
    assert_matches_reference(sentinel_env, len(shop.events))
    processor = sentinel_stack["processor"]
    assert processor.starts == 1, "the processor went on by itself"
    assert "paused" in processor.log_path.read_text(), "the processor met the failover"
