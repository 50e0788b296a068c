"""Pytest fixtures for the real Kafka, Redis and PostgreSQL servers of
:mod:`reco.local.servers`.

Load them from ``tests/conftest.py`` with ``pytest_plugins = ["tests.support.fixtures"]``
(or ``from tests.support.fixtures import *``). Each server is started once per session, on
first use; every test gets its own topic, consumer group, Redis db contents and database, so
tests do not see each other's data.

A test may stop, kill and restart a session server; the per-test fixtures start it again if
it was left stopped, so one such test cannot break the ones after it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from reco.local.redis_cluster import RedisClusterServer
from reco.local.redis_sentinel import RedisSentinelServer
from reco.local.servers import (
    KafkaServer,
    PostgresServer,
    RedisServer,
    ServerError,
)
from tests.support.kube import TEST_CONTEXT, ControlPlane

__all__ = [
    "control_plane",
    "k8s_namespace",
    "kafka_admin",
    "kafka_group_id",
    "kafka_server",
    "kafka_topic",
    "kafka_topic_factory",
    "pg_conn",
    "pg_database",
    "postgres_server",
    "redis_client",
    "redis_cluster",
    "redis_cluster_server",
    "redis_server",
]

logger = logging.getLogger(__name__)

TOPIC_READY_TIMEOUT = 30.0


def _unique_name(request: pytest.FixtureRequest, prefix: str, max_len: int = 120) -> str:
    """A name that says which test made it (for reading logs) and never repeats."""
    suffix = uuid.uuid4().hex[:8]
    room = max_len - len(prefix) - len(suffix) - 2
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:room].strip("-.")
    return f"{prefix}-{test}-{suffix}"


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer]:
    """One KRaft broker for the session; ``.bootstrap`` is ``127.0.0.1:<port>``."""
    with KafkaServer() as server:
        yield server


@pytest.fixture(scope="session")
def kafka_admin(kafka_server: KafkaServer) -> AdminClient:
    return AdminClient(kafka_server.client_config())


@pytest.fixture
def kafka_topic_factory(
    request: pytest.FixtureRequest, kafka_server: KafkaServer, kafka_admin: AdminClient
) -> Iterator[Callable[..., str]]:
    """Create fresh topics (``create(partitions=1, config=None) -> name``); deleted after."""
    created: list[str] = []

    def create(partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        kafka_server.start()
        name = _unique_name(request, "t")
        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
        )
        futures = kafka_admin.create_topics([topic], operation_timeout=TOPIC_READY_TIMEOUT)
        futures[name].result(timeout=TOPIC_READY_TIMEOUT)
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions)
        return name

    yield create

    if created:
        kafka_server.start()
        futures = kafka_admin.delete_topics(created, operation_timeout=TOPIC_READY_TIMEOUT)
        for name, future in futures.items():
            try:
                future.result(timeout=TOPIC_READY_TIMEOUT)
            except Exception as exc:  # a failed cleanup must not fail the test
                logger.warning("could not delete topic %s: %s", name, exc)


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest, kafka_topic_factory: Callable[..., str]) -> str:
    """A fresh topic with 1 partition, or N with ``@pytest.mark.parametrize("kafka_topic",
    [N], indirect=True)``."""
    return kafka_topic_factory(partitions=getattr(request, "param", 1))


@pytest.fixture
def kafka_group_id(request: pytest.FixtureRequest) -> str:
    """A consumer group id no other test uses, so committed offsets never leak between tests."""
    return _unique_name(request, "g")


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    """Metadata lags topic creation; producing before every partition has a leader fails."""
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 for p in metadata.partitions.values())
        ):
            return
        time.sleep(0.05)
    raise ServerError(f"topic {topic} has no leader for all {partitions} partitions")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server for the session; ``.url`` is ``redis://127.0.0.1:<port>/0``."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an empty db 0, flushed again after the test."""
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    redis_server.start()
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def redis_cluster_server() -> Iterator[RedisClusterServer]:
    """One Redis Cluster for the session: 3 masters with a replica each, started and joined
    on first use (``.url`` is its ``redis+cluster://`` URL; ``.startup_seconds``)."""
    with RedisClusterServer(masters=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(redis_cluster_server: RedisClusterServer) -> Iterator[RedisClusterServer]:
    """The session's cluster, healthy (a node a test killed is started again, and rejoins)
    and empty before the test; emptied again after it."""
    redis_cluster_server.start()
    redis_cluster_server.flush()
    yield redis_cluster_server
    redis_cluster_server.start()
    redis_cluster_server.flush()


@pytest.fixture(scope="session")
def redis_sentinel_server() -> Iterator[RedisSentinelServer]:
    """One Sentinel-watched Redis for the session: a master, its replica and three
    Sentinels, started on first use (``.url`` is its ``redis+sentinel://`` URL)."""
    with RedisSentinelServer() as server:
        yield server


@pytest.fixture
def redis_sentinel(redis_sentinel_server: RedisSentinelServer) -> Iterator[RedisSentinelServer]:
    """The session's Sentinel-watched Redis, healthy (a data node a test killed is started
    again, as the master's replica) and empty before the test; emptied again after it."""
    redis_sentinel_server.start()
    redis_sentinel_server.flush()
    yield redis_sentinel_server
    redis_sentinel_server.start()
    redis_sentinel_server.flush()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; ``.url`` is its ``reco`` database."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_database(request: pytest.FixtureRequest, postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty database for this test, dropped after it."""
    postgres_server.start()
    name = _unique_name(request, "t", max_len=63).lower().replace("-", "_").replace(".", "_")
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield postgres_server.url_for(name)
    postgres_server.start()
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def pg_conn(pg_database: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's fresh database."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        yield conn


# -- Kubernetes ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, once per
    session (the first use builds the binaries if the cache lacks them: ~12 minutes)."""
    # HPAs act every 2 s instead of 15: the autoscaling tests wait on what they do.
    with ControlPlane(
        controller_manager_args=("--horizontal-pod-autoscaler-sync-period=2s",)
    ) as plane:
        _refuse_foreign_context(plane)
        yield plane


def _refuse_foreign_context(plane: ControlPlane) -> None:
    """Cluster tests create and delete freely: make sure every kubectl and helm they run
    talks to the suite's own cluster, never to a context a developer's KUBECONFIG names."""
    context = plane.kubectl("config", "current-context").strip()
    server = plane.kubectl(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
    )
    if context != TEST_CONTEXT or server != plane.server:
        raise RuntimeError(
            f"refusing to run cluster tests against context {context!r} at {server}: "
            f"only the suite's own {TEST_CONTEXT!r} at {plane.server}"
        )


@pytest.fixture
def k8s_namespace(request: pytest.FixtureRequest, control_plane: ControlPlane) -> Iterator[str]:
    """A namespace of this test's own, deleted afterwards (without waiting for it)."""
    name = _unique_name(request, "t", max_len=63).lower().replace("_", "-").replace(".", "-")
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
