"""The production shape on a Redis Cluster (3 masters, a replica each): the processor
SIGKILLed again and again, and a master SIGKILLed mid-stream, lose nothing and count nothing
twice; the end state is what one uninterrupted processor builds from the topic."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reco.local.redis_cluster import RedisClusterNode, RedisClusterServer
from reco.local.servers import KafkaServer
from reco.local.stack import Stack, post_events
from tests.conftest import wait_until
from tests.integration import test_stack as single_redis
from tests.integration.conftest import (
    applied_offsets,
    assert_matches_reference,
    drained,
    env_of,
    shop_events,
    stack_of,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster_env(
    kafka_server: KafkaServer,
    redis_cluster: RedisClusterServer,
    pg_database: str,
    kafka_topic_factory: Callable[..., str],
) -> dict[str, str]:
    return env_of(kafka_server, redis_cluster.url, pg_database, kafka_topic_factory)


@pytest.fixture
def cluster_stack(cluster_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    with stack_of(cluster_env, tmp_path) as s:
        yield s


def test_processor_killed_repeatedly_on_a_cluster_loses_nothing_counts_nothing_twice(
    cluster_stack: Stack, cluster_env: dict[str, str]
) -> None:
    """The single-Redis test, on the Cluster: each kill lands between or inside a batch's
    journal and its slot groups' writes."""
    single_redis.test_processor_killed_repeatedly_loses_nothing_counts_nothing_twice(
        cluster_stack, cluster_env
    )


def _personalised(api: str, user: str) -> bool:
    try:
        r = httpx.get(api + "/recommendations", params={"user_id": user}, timeout=5)
    except httpx.TransportError:
        return False
    return r.status_code == 200 and bool(r.json()["personalised"])


@pytest.mark.parametrize("master", ["meta", "other"])
def test_a_master_killed_mid_stream_is_replaced_by_its_replica_and_nothing_is_lost(
    cluster_stack: Stack,
    cluster_env: dict[str, str],
    redis_cluster: RedisClusterServer,
    master: str,
) -> None:
    """A master (the one holding the journal's meta slot, or another) is SIGKILLed while
    events stream in; its replica takes its slots over; the processor pauses and goes on,
    the api answers again, and once the node is back (as a replica) the features equal an
    uninterrupted processor's."""
    killed: list[RedisClusterNode] = []

    def kill() -> None:
        with redis_cluster.masters()[0].client() as client:
            prefix = cluster_env["RECO_REDIS_PREFIX"]
            meta_slot = int(client.cluster("keyslot", prefix + "{m}:offsets"))
        meta = redis_cluster.master_of(meta_slot)
        others = [m for m in redis_cluster.masters() if m is not meta]
        killed.append(meta if master == "meta" else others[0])
        redis_cluster.kill_master(killed[0])  # returns once its replica serves its slots

    # The node comes back as a replica, empty, and copies its master.
    failover_mid_stream(cluster_stack, kill, lambda: redis_cluster.restart(killed[0]), seed=29)


def failover_mid_stream(
    stack: Stack, kill: Callable[[], None], restart: Callable[[], None], *, seed: int
) -> None:
    """Events stream in while ``kill`` takes a Redis master down (returning once its replica
    serves); the processor goes on past the batches the kill interrupted, by itself, the api
    serves recommendations again, nothing sent is lost, and after ``restart`` brings the
    node back the features equal an uninterrupted processor's."""
    env = stack.env
    stack.start("ingest", "processor", "api")
    api, ingest = stack["api"].url, stack["ingest"].url
    shop = shop_events(3000, seed=seed)
    httpx.put(api + "/items", json=shop.items, timeout=60).raise_for_status()
    first = len(shop.events) // 3
    assert post_events(ingest, shop.events[:first]) == first
    wait_until(
        lambda: stack["processor"].metric("events_processed_total") > 0,
        timeout_s=60,
        every_s=0.05,
    )

    sent: list[int] = []
    sender = threading.Thread(target=lambda: sent.append(post_events(ingest, shop.events[first:])))
    sender.start()
    applied_before = sum(applied_offsets(env).values())
    try:
        kill()
        wait_until(
            lambda: sum(applied_offsets(env).values()) > applied_before + 100,
            timeout_s=120,
            every_s=0.2,
        )
        wait_until(lambda: _personalised(api, shop.events[0]["user_id"]), timeout_s=60)
    finally:
        sender.join()
    assert sent == [len(shop.events) - first]
    drained(stack, len(shop.events))
    restart()
    assert_matches_reference(env, len(shop.events))
    processor = stack["processor"]
    assert processor.proc is not None
    assert processor.proc.poll() is None, "the processor went on by itself"
    assert "paused" in processor.log_path.read_text(), "the processor met the failover"
