"""The rankings the api serves from Redis: the same as the in-memory store gives, under
concurrent requests with the per-process list cache on, and the same as before the read path
moved out of Redis (a golden file written by the Lua read path it replaced).

Both stores are filled by the real processor from the same events: the demo shop (every
user and session, with the catalog's rules) and a sample of the Diginetica dataset (when
the shared datasets are present).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from reco.adapters.factory import open_feature_store
from reco.adapters.sqlite_catalog import SqliteCatalog
from reco.api.service import Recommender
from reco.catalog import ItemIn
from reco.datasets import read_events
from reco.demo import generate
from reco.evaluation.engine import EVAL_OPTIONS, MemoryLog, NullCatalog
from reco.events import Event, EventValidator
from reco.local.servers import RedisServer
from reco.metrics import EmbeddedMetrics
from reco.ports import Catalog, FeatureStore
from reco.processor import Processor
from reco.rules import RuleOptions
from reco.settings import EngineSettings

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parent / "golden" / "demo_rankings.json"
NOW = 1_767_000_000.0
"""The demo shop's clock: fixed, so that its events and rankings are the same every run."""
Subject = tuple[str, str]
Page = list[list[Any]]


def _events(raw: Sequence[dict[str, Any]], settings: EngineSettings) -> list[Event]:
    validator = EventValidator(settings.event_weights, max_future_skew_s=1e12)
    return [validator.validate(e) for e in raw]


def _fill(store: FeatureStore, events: Sequence[Event], settings: EngineSettings) -> None:
    """What the processor writes for ``events``, in its batches."""
    log = MemoryLog()
    processor = Processor(log, store, NullCatalog(), settings, EmbeddedMetrics(), group="golden")
    processor.resume()
    log.append(events)
    while processor.run_once(1000, 0).records:
        pass


def _page(recommender: Recommender, subject: Subject, options: RuleOptions) -> Page:
    kind, sid = subject
    response = recommender.recommend(
        user_id=sid if kind == "user" else None,
        session_id=sid if kind == "session" else None,
        count=10,
        options=options,
    )
    return [[r.item_id, r.score, r.reasons] for r in response.items]


def _pages(
    store: FeatureStore,
    catalog: Catalog,
    settings: EngineSettings,
    subjects: Sequence[Subject],
    options: RuleOptions,
    *,
    threads: int = 1,
) -> dict[Subject, Page]:
    recommender = Recommender(store, catalog, settings, EmbeddedMetrics())
    with ThreadPoolExecutor(threads) as pool:
        pages = list(pool.map(lambda s: _page(recommender, s, options), subjects))
    return dict(zip(subjects, pages, strict=True))


def _subjects(events: Sequence[Event], limit: int) -> list[Subject]:
    users = list(dict.fromkeys(e.user_id for e in events if e.user_id))[:limit]
    sessions = list(dict.fromkeys(e.session_id for e in events if e.session_id))[-limit:]
    return [("user", u) for u in users] + [("session", s) for s in sessions]


@pytest.fixture
def redis_store(redis_server: RedisServer, redis_client: Any) -> Iterator[FeatureStore]:
    """A store as an api replica opens it: the list cache on, at the default TTL."""
    store = open_feature_store(redis_server.url, EngineSettings())
    yield store
    store.close()


def _concurrent_equals_memory(
    redis_store: FeatureStore,
    events: Sequence[Event],
    catalog: Catalog,
    options: RuleOptions,
    subjects: Sequence[Subject],
) -> dict[Subject, Page]:
    settings = EngineSettings(cache_ttl_s=0)  # every request computed, none replayed
    memory = open_feature_store("memory://", settings)
    _fill(memory, events, settings)
    _fill(redis_store, events, settings)
    expected = _pages(memory, catalog, settings, subjects, options)
    # Twice over, eight threads: the first pass fills the list cache, the second reads it.
    for _ in range(2):
        got = _pages(redis_store, catalog, settings, subjects, options, threads=8)
        differing = [s for s in subjects if got[s] != expected[s]]
        assert not differing, f"{len(differing)} differ, first {differing[0]}"
    assert sum(bool(page) for page in expected.values()) > len(subjects) * 0.9
    return expected


def test_demo_shop_rankings_equal_memory_and_the_golden_file(
    redis_store: FeatureStore, tmp_path: Path
) -> None:
    shop = generate(now=NOW)
    settings = EngineSettings()
    events = _events(shop.events, settings)
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.upsert([ItemIn.model_validate(item) for item in shop.items])
    subjects = _subjects(events, 300)
    pages = _concurrent_equals_memory(redis_store, events, catalog, RuleOptions(), subjects)
    # Items and scores; the reasons are compared with the in-memory store's above.
    golden = {f"{kind}:{sid}": [page[:2] for page in pages] for (kind, sid), pages in pages.items()}
    if os.environ.get("RECO_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(orjson.dumps(golden, option=orjson.OPT_SORT_KEYS) + b"\n")
    assert golden == orjson.loads(GOLDEN.read_bytes())


def test_dataset_sample_rankings_equal_memory(redis_store: FeatureStore) -> None:
    """Real sessions (Diginetica, 30 000 views): long sessions, dense co-views and index
    lists, many ties; the evaluation's options (no rule drops a candidate)."""
    root = Path(os.environ.get("RECO_DATASETS") or Path(__file__).parents[3] / "shared" / "data")
    path = root / "diginetica-sample" / "sample_train-item-views.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent: set RECO_DATASETS (docs/datasets.md)")
    raw = []
    for event in read_events(path, "diginetica"):
        raw.append(event)
        if len(raw) == 30_000:
            break
    events = _events(raw, EngineSettings())
    _concurrent_equals_memory(
        redis_store, events, NullCatalog(), EVAL_OPTIONS, _subjects(events, 300)
    )
