"""The stack of real services over the suite's real Kafka, Redis and PostgreSQL."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException

from reco.adapters.factory import open_catalog, open_feature_store
from reco.adapters.kafka_consumer import KafkaConsumer
from reco.adapters.memory_features import MemoryFeatureStore
from reco.demo import generate
from reco.local.servers import KafkaServer, RedisServer
from reco.local.stack import Stack
from reco.metrics import ProcessorMetrics
from reco.ports import FeatureStore
from reco.processor import Processor
from reco.settings import EngineSettings, ProcessorSettings
from tests.conftest import wait_until

logger = logging.getLogger(__name__)

PARTITIONS = 4
# Caps far above what the tests' data reaches: trimming a capped list depends on where
# batches start and end, and these tests compare runs whose batches differ.
UNCAPPED = {
    "RECO_MAX_RELATED_PER_ITEM": "100000",
    "RECO_MAX_POPULAR": "100000",
    "RECO_MAX_SESSIONS": "10000000",
    "RECO_DEDUPE_WINDOW": "10000000",
}


@pytest.fixture
def stack_env(
    kafka_server: KafkaServer,
    redis_server: RedisServer,
    pg_database: str,
    kafka_topic_factory: Callable[..., str],
) -> dict[str, str]:
    return env_of(kafka_server, redis_server.url, pg_database, kafka_topic_factory)


def env_of(
    kafka_server: KafkaServer,
    redis_url: str,
    pg_database: str,
    kafka_topic_factory: Callable[..., str],
) -> dict[str, str]:
    """The services' settings over the suite's servers, with a fresh topic and prefix."""
    return {
        "RECO_KAFKA_BOOTSTRAP": kafka_server.bootstrap,
        "RECO_TOPIC": kafka_topic_factory(partitions=PARTITIONS),
        "RECO_TOPIC_PARTITIONS": str(PARTITIONS),
        "RECO_REDIS_URL": redis_url,
        "RECO_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}:",
        "RECO_DATABASE_URL": pg_database,
        "RECO_CACHE_TTL_S": "1",
        "RECO_SESSION_TIMEOUT_MS": "6000",
        "RECO_MODEL_REFRESH_S": "0.5",
        **UNCAPPED,
    }


@contextmanager
def stack_of(env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """The services over ``env`` (started by the test), their logs printed if it fails,
    every one stopped at the end."""
    (tmp_path / "logs").mkdir()
    s = Stack(env, tmp_path / "logs")
    try:
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


@pytest.fixture
def stack(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    with stack_of(stack_env, tmp_path) as s:
        yield s


def topic_end_offsets(env: dict[str, str]) -> dict[int, int]:
    """The offset after the last record of each partition, asked of the broker."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": env["RECO_KAFKA_BOOTSTRAP"], "group.id": "end-offsets-probe"}
    )
    try:
        ends = {}
        for p in range(PARTITIONS):
            _, high = consumer.get_watermark_offsets(
                TopicPartition(env["RECO_TOPIC"], p), timeout=10
            )
            ends[p] = high
        return ends
    finally:
        consumer.close()


def env_store(env: dict[str, str]) -> FeatureStore:
    """The feature store the services of ``env`` open: one Redis, or a Redis Cluster."""
    return open_feature_store(
        env["RECO_REDIS_URL"], EngineSettings(), prefix=env["RECO_REDIS_PREFIX"]
    )


def applied_offsets(env: dict[str, str]) -> dict[int, int]:
    """What the processor has applied, as the feature store records it."""
    store = env_store(env)
    try:
        return store.applied_offsets()
    finally:
        store.close()


def reference_snapshot(env: dict[str, str]) -> dict[str, Any]:
    """The features an uninterrupted processor builds from the whole topic, in memory."""
    settings = ProcessorSettings(
        kafka_bootstrap=env["RECO_KAFKA_BOOTSTRAP"],
        topic=env["RECO_TOPIC"],
        **{k.removeprefix("RECO_").lower(): int(v) for k, v in UNCAPPED.items()},
    )
    store = MemoryFeatureStore(
        max_related_per_item=settings.max_related_per_item,
        max_popular=settings.max_popular,
        max_sessions=settings.max_sessions,
        dedupe_window=settings.dedupe_window,
    )
    catalog = open_catalog(env["RECO_DATABASE_URL"])
    group = f"reference-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(settings.kafka_bootstrap, settings.topic, group)
    try:
        processor = Processor(consumer, store, catalog, settings, ProcessorMetrics(), group=group)
        processor.resume()
        while True:
            result = processor.run_once(5000, 1.0)
            if not result.records and consumer.assignments() and not any(consumer.lag().values()):
                break
    finally:
        consumer.close()
        catalog.close()
    return store.snapshot()


def assert_same_features(
    actual: dict[str, Any], expected: dict[str, Any], settings: ProcessorSettings
) -> None:
    """Equal features. Decayed values are compared as of one fixed time, so that stores with
    different landmarks (the first batch sets it) compare, and to 1e-9 relative, since sums
    in another order differ in the last bits."""
    assert actual["offsets"] == expected["offsets"]
    assert actual["profiles"] == expected["profiles"]
    assert actual["sessions"] == expected["sessions"]
    at = 2_000_000_000.0
    halves = {
        "coview": settings.coview_half_life_s,
        "sequence": settings.coview_half_life_s,
        "popularity": settings.popularity_half_life_s,
        "category_popularity": settings.popularity_half_life_s,
    }
    for table, half_life in halves.items():
        got = _flat(actual[table], actual["landmark"], at, half_life)
        want = _flat(expected[table], expected["landmark"], at, half_life)
        assert got.keys() == want.keys(), f"{table}: different keys"
        wrong = [k for k in got if not math.isclose(got[k], want[k], rel_tol=1e-9)]
        assert not wrong, f"{table}: {len(wrong)} values differ, e.g. {wrong[:3]}"
    # The recent weights are not decayed: the same buckets with the same sums.
    got, want = _flat(actual["recent"], 0, 0, 1), _flat(expected["recent"], 0, 0, 1)
    assert got.keys() == want.keys(), "recent: different keys"
    wrong = [k for k in got if not math.isclose(got[k], want[k], rel_tol=1e-9)]
    assert not wrong, f"recent: {len(wrong)} values differ, e.g. {wrong[:3]}"


def _flat(table: dict[str, Any], landmark: float, at: float, half_life: float) -> dict[str, float]:
    factor = math.exp2((landmark - at) / half_life)
    out: dict[str, float] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update({f"{key}/{inner}": v * factor for inner, v in value.items()})
        else:
            out[key] = value * factor
    return out


def redis_snapshot(env: dict[str, str]) -> dict[str, Any]:
    store = env_store(env)
    try:
        return store.snapshot()
    finally:
        store.close()


def assert_matches_reference(env: dict[str, str], events: int) -> dict[str, Any]:
    """Redis holds what an uninterrupted processor builds from the whole topic."""
    expected = reference_snapshot(env)
    assert sum(expected["offsets"].values()) == events
    assert_same_features(redis_snapshot(env), expected, ProcessorSettings())
    return expected


def drained(stack: Stack, events: int) -> None:
    """The feature store has applied every record of every partition (what the topic holds,
    asked of the broker: the truth, whatever the processor's own metrics say)."""
    env = stack.env

    def caught_up() -> bool:
        try:
            return applied_offsets(env) == topic_end_offsets(env)
        except KafkaException as exc:
            # A broker just thawed or restarted answers "not leader" for a moment while
            # it takes its partitions back: ask again.
            logger.info("end offsets not known yet: %s", exc)
            return False

    try:
        wait_until(caught_up, timeout_s=180, every_s=0.5)
    except AssertionError:
        processor = stack["processor"]
        raise AssertionError(
            f"processor not caught up on {events} events: applied {applied_offsets(env)}, "
            f"topic ends {topic_end_offsets(env)}, "
            f"lags {processor.samples('consumer_lag_records')}\n{processor.tail(60)}"
        ) from None


def shop_events(users: int, seed: int = 5) -> Any:
    return generate(seed=seed, users=users, now=time.time() - 60)
