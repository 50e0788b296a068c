"""Adapters of each interface, parametrized so that one suite runs against all of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.sqlite_catalog import SqliteCatalog
from reco.ports import Catalog, FeatureStore


@pytest.fixture(params=["memory"])
def feature_store(request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    store = MemoryFeatureStore(max_related_per_item=4, max_popular=4, max_sessions=3)
    yield store
    store.close()


@pytest.fixture(params=["sqlite"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    cat = SqliteCatalog(tmp_path / "catalog.db", cache_size=2)
    yield cat
    cat.close()
