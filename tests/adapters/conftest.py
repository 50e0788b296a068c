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


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def feature_store(request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    if request.param == "memory":
        store: FeatureStore = MemoryFeatureStore(**CAPS)
    else:
        from reco.adapters.redis_features import RedisFeatureStore

        server = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_client")  # flushes the db after the test
        store = RedisFeatureStore.from_url(server.url, **CAPS)
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
