"""The production shape on a Redis that Sentinel watches (a master, its replica, three
Sentinels): the master SIGKILLed while events stream in is replaced by its replica, the
processor and the api go on, and the end state is what one uninterrupted processor builds
from the topic (the replica may have missed the last batches, which Kafka still holds)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reco.local.redis_sentinel import RedisSentinelServer
from reco.local.servers import KafkaServer
from reco.local.stack import Stack
from tests.integration.conftest import env_of
from tests.integration.test_cluster_stack import failover_mid_stream

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_env(
    kafka_server: KafkaServer,
    redis_sentinel: RedisSentinelServer,
    pg_database: str,
    kafka_topic_factory: Callable[..., str],
) -> dict[str, str]:
    """The stack's settings, on the Sentinel-watched Redis (``stack`` is built on them)."""
    return env_of(kafka_server, redis_sentinel.url, pg_database, kafka_topic_factory)


def test_the_master_killed_mid_stream_is_replaced_and_nothing_is_lost(
    stack: Stack, redis_sentinel: RedisSentinelServer
) -> None:
    # The old master comes back empty, as the new one's replica.
    failover_mid_stream(stack, redis_sentinel.kill_master, redis_sentinel.restart, seed=31)
