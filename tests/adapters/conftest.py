"""Adapters of each interface, parametrized so that one suite runs against all of them.

Real servers (Redis, PostgreSQL, Kafka) are started lazily, only when a test of their
adapter runs, by the fixtures of ``tests.support.fixtures``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.sqlite_catalog import SqliteCatalog
from reco.adapters.sqlite_models import SqliteModelStore
from reco.ports import Catalog, FeatureStore, ModelStore

# Small caps so that the contract tests can see them at work.
CAPS = {
    "max_related_per_item": 4,
    "max_popular": 4,
    "max_sessions": 3,
    "neighbour_sessions_per_item": 3,
}


# A Redis Cluster store caps sessions per slot group (max_sessions / redis_slot_groups each),
# not over the whole store: these tests of which sessions the cap keeps do not apply to it.
# tests/adapters/test_redis_cluster.py covers its own cap.
_STORE_WIDE_SESSION_CAP = {
    "test_oldest_sessions_are_dropped",
    "test_neighbours_equal_the_in_memory_stores",
}


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-sentinel", marks=pytest.mark.integration),
        pytest.param("redis-cluster", marks=pytest.mark.integration),
    ]
)
def feature_store(request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    if request.param == "memory":
        store: FeatureStore = MemoryFeatureStore(**CAPS)
    elif request.param == "redis":
        from reco.adapters.redis_features import RedisFeatureStore

        server = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_client")  # flushes the db after the test
        store = RedisFeatureStore.from_url(server.url, **CAPS)
    elif request.param == "redis-sentinel":
        from reco.adapters.redis_features import RedisFeatureStore

        sentinel = request.getfixturevalue("redis_sentinel")  # empty before and after
        store = RedisFeatureStore.from_url(sentinel.url, **CAPS)
    else:
        from reco.adapters.redis_cluster import RedisClusterFeatureStore

        if request.node.originalname in _STORE_WIDE_SESSION_CAP:
            pytest.skip("a Redis Cluster store caps sessions per slot group")
        cluster = request.getfixturevalue("redis_cluster")  # empty before and after
        # The cap of 3 sessions in each group, so that no test here sees one dropped.
        groups = 64
        caps = {**CAPS, "max_sessions": CAPS["max_sessions"] * groups}
        store = RedisClusterFeatureStore.from_url(cluster.url, slot_groups=groups, **caps)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        cat: Catalog = SqliteCatalog(tmp_path / "catalog.db", cache_size=2)
    else:
        from reco.adapters.postgres_catalog import PostgresCatalog

        cat = PostgresCatalog.from_url(request.getfixturevalue("pg_database"), cache_size=2)
    yield cat
    cat.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def model_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelStore]:
    if request.param == "sqlite":
        store: ModelStore = SqliteModelStore(tmp_path / "models.db")
    else:
        from reco.adapters.postgres_models import PostgresModelStore

        store = PostgresModelStore.from_url(request.getfixturevalue("pg_database"))
    yield store
    store.close()
