"""What only the Kafka event log has: partitioning by key, a broker that goes away, a group
of several members, topic management and the dead-letter topic's headers."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from reco.adapters.kafka_consumer import KafkaConsumer
from reco.adapters.kafka_producer import KafkaProducer
from reco.adapters.kafka_topics import ensure_topic
from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.sqlite_catalog import SqliteCatalog
from reco.events import Event
from reco.exceptions import BackendUnavailable, ConfigError
from reco.local.servers import KafkaServer
from reco.metrics import ProcessorMetrics
from reco.processor import Processor
from reco.settings import EngineSettings
from tests.adapters.test_event_log import by_partition, make_events, poll_until, read_topic
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def murmur2(key: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (signed 32-bit), written out here so that the partition test
    does not check librdkafka against itself."""
    m = 0x5BD1E995
    length = len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = (int.from_bytes(key[i : i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[length - length % 4 :]
    for shift, byte in enumerate(tail):
        h ^= byte << (8 * shift)
    if tail:
        h = (h * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition the Java producer's default partitioner picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafkas_test_vectors(key: bytes, expected: int) -> None:
    """The values Kafka's own ``UtilsTest.testMurmur2`` asserts."""
    assert murmur2(key) == expected


@pytest.fixture
def producer(kafka_server: KafkaServer, kafka_topic: str) -> Iterator[KafkaProducer]:
    made = KafkaProducer(kafka_server.bootstrap, kafka_topic, delivery_timeout_s=3)
    yield made
    made.close()


@pytest.fixture
def consumers(
    kafka_server: KafkaServer, kafka_topic: str, kafka_group_id: str
) -> Iterator[Callable[[], KafkaConsumer]]:
    made: list[KafkaConsumer] = []

    def make() -> KafkaConsumer:
        made.append(
            KafkaConsumer(
                kafka_server.bootstrap,
                kafka_topic,
                kafka_group_id,
                lag_refresh_s=0.1,
                # A member learns of a rebalance at its next heartbeat (3 s by default).
                config={"heartbeat.interval.ms": 300},
            )
        )
        return made[-1]

    yield make
    for consumer in made:
        consumer.close()


@pytest.mark.parametrize("kafka_topic", [4], indirect=True)
def test_one_users_events_share_the_partition_the_java_client_would_pick(
    producer: KafkaProducer, consumers: Callable[[], KafkaConsumer]
) -> None:
    users = [f"user-{n}" for n in range(24)]
    events = make_events(users, per_user=5)
    producer.produce(events)

    records = poll_until(consumers(), len(events))

    partitions_of: dict[str, set[int]] = {}
    for record in records:
        assert record.key is not None
        partitions_of.setdefault(record.key, set()).add(record.partition)
    assert partitions_of == {u: {java_partition(u.encode(), 4)} for u in users}
    assert len(by_partition(records)) == 4, "24 users should reach all 4 partitions"


def test_produce_to_a_stopped_broker_raises_within_the_timeout_and_recovers(
    kafka_server: KafkaServer, producer: KafkaProducer, kafka_topic: str
) -> None:
    producer.produce(make_events(["before"], per_user=1))
    assert producer.ready()

    kafka_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=kafka_topic) as raised:
            producer.produce(make_events(["during"], per_user=2))
        elapsed = time.monotonic() - started
        assert elapsed <= 3.0 + 0.3, f"took {elapsed:.1f} s with a 3 s timeout"
        assert "timed out" in str(raised.value).lower() or "acknowledged" in str(raised.value)
        assert not producer.ready()
    finally:
        kafka_server.start()

    wait_until(producer.ready, timeout_s=60, every_s=0.5)
    producer.produce(make_events(["after"], per_user=1))  # the same producer works again


@pytest.mark.parametrize("kafka_topic", [4], indirect=True)
def test_concurrent_produce_calls_each_wait_for_their_own_events(
    producer: KafkaProducer, consumers: Callable[[], KafkaConsumer]
) -> None:
    """Ingest serves requests on a thread pool with one producer."""
    batches = [make_events([f"t{n}-u{u}" for u in range(10)], per_user=5) for n in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(producer.produce, batches))

    records = poll_until(consumers(), sum(len(b) for b in batches))

    sent = {e.event_id for batch in batches for e in batch}
    assert {Event.from_json(r.value).event_id for r in records} == sent


@pytest.mark.parametrize("kafka_topic", [4], indirect=True)
def test_two_members_split_four_partitions_and_count_assignments(
    consumers: Callable[[], KafkaConsumer],
) -> None:
    def owned(consumer: KafkaConsumer) -> set[int]:
        consumer.poll(100, 0.1)
        return set(consumer.lag())

    first = consumers()
    wait_until(lambda: owned(first) == {0, 1, 2, 3}, timeout_s=30)
    assert first.assignments() == 1

    second = consumers()
    wait_until(
        lambda: len(owned(first)) == 2 and owned(second) | owned(first) == {0, 1, 2, 3},
        timeout_s=60,
    )
    assert owned(first).isdisjoint(owned(second))
    # Cooperative rebalancing: the first member only gave partitions up, nothing came to it.
    assert (first.assignments(), second.assignments()) == (1, 1)

    second.close()
    wait_until(lambda: owned(first) == {0, 1, 2, 3}, timeout_s=60)
    assert first.assignments() == 2, "partitions came back from another member"


def test_a_commit_while_the_broker_stalls_never_holds_the_consumer(
    kafka_server: KafkaServer, producer: KafkaProducer, kafka_topic: str, kafka_group_id: str
) -> None:
    """The deadlock that stopped a processor for good after a broker restart. A synchronous
    commit sent as the coordinator went away waited for a new coordinator; the group
    session expired meanwhile, so librdkafka revoked the partitions and waited for the
    application to acknowledge that in its next poll, before rejoining the group; and the
    application was the thread blocked in the commit. Nothing timed out: the commit sat in
    the coordinator's queue (retried every socket.timeout.ms), and the consumer read
    nothing, logged nothing (librdkafka's logs are delivered by poll) and would not close.

    A commit now returns at once; polls go on, serve the revocation, rejoin, and the
    consumer reads again once the broker answers."""
    producer.produce(make_events(["a", "b"], per_user=3))
    consumer = KafkaConsumer(
        kafka_server.bootstrap,
        kafka_topic,
        kafka_group_id,
        lag_refresh_s=0.1,
        config={"heartbeat.interval.ms": 300, "session.timeout.ms": 6000},
    )
    poll_until(consumer, 6)
    assignments = consumer.assignments()

    kafka_server.pause()
    try:
        committed = threading.Event()
        threading.Thread(
            target=lambda: (consumer.commit({0: 6}), committed.set()), daemon=True
        ).start()
        # With the synchronous commit this waited as long as the broker did, and then on.
        assert committed.wait(2), "commit waited for the broker"
        # Past the 6 s session: the group revokes the partition; polling serves that.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert consumer.poll(100, 0.2) == []
    finally:
        kafka_server.resume()

    wait_until(lambda: consumer.poll(100, 0.2) == [] and consumer.assignments() > assignments, 60)
    producer.produce(make_events(["c"], per_user=1))
    # Whether the stalled commit landed before the rejoin decides where reading resumes
    # (offset 6, or 0 again for the processor to skip): either way the new record comes.
    seen: list[int] = []
    wait_until(lambda: seen.extend(r.offset for r in consumer.poll(100, 0.2)) or 6 in seen, 30)
    consumer.commit({0: 7})  # as the processor does after a reassignment
    wait_until(lambda: consumer.poll(100, 0.1) == [] and consumer.lag() == {0: 0}, timeout_s=30)
    consumer.close()


def test_a_member_reads_on_after_a_rebalance_without_losing_records(
    producer: KafkaProducer, consumers: Callable[[], KafkaConsumer]
) -> None:
    """The processor's flow: poll, commit, a new member takes over from the committed offset."""
    producer.produce(make_events(["a", "b", "c"], per_user=4))
    first = consumers()
    records = poll_until(first, 12)
    first.commit({0: 6})
    first.close()
    producer.produce(make_events(["d"], per_user=2))

    second = consumers()
    second.seek({0: 6})
    rest = poll_until(second, 8)

    assert [r.offset for r in rest] == list(range(6, 14))
    assert [r.value for r in rest[:6]] == [r.value for r in records[6:]]


def test_dead_letter_keeps_value_key_and_source_in_headers(
    kafka_server: KafkaServer,
    kafka_admin: AdminClient,
    producer: KafkaProducer,
    consumers: Callable[[], KafkaConsumer],
    kafka_topic: str,
) -> None:
    producer.produce(make_events(["poison-user"], per_user=3))
    consumer = consumers()
    record = poll_until(consumer, 3)[2]
    try:
        consumer.dead_letter(record, "undecodable event record: ü")

        (message, headers), *others = read_topic(kafka_server.bootstrap, f"{kafka_topic}.dlq")
        assert others == []
        assert message.value() == record.value
        assert message.key() == b"poison-user"
        assert headers == {
            "reason": "undecodable event record: ü".encode(),
            "source-topic": kafka_topic.encode(),
            "source-partition": b"0",
            "source-offset": b"2",
        }
    finally:
        kafka_admin.delete_topics([f"{kafka_topic}.dlq"], operation_timeout=30)


@pytest.fixture
def topic_name(kafka_server: KafkaServer, kafka_admin: AdminClient) -> Iterator[str]:
    name = f"ensure-{uuid.uuid4().hex[:8]}"
    yield name
    kafka_server.start()
    kafka_admin.delete_topics([name], operation_timeout=30)


def test_ensure_topic_creates_once_and_warns_about_fewer_partitions(
    kafka_server: KafkaServer,
    kafka_admin: AdminClient,
    topic_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reco.adapters.kafka_topics")

    assert (
        ensure_topic(kafka_server.bootstrap, topic_name, 3, config={"retention.ms": "60000"}) == 3
    )
    assert ensure_topic(kafka_server.bootstrap, topic_name, 3) == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    assert ensure_topic(kafka_server.bootstrap, topic_name, 6) == 3

    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert topic_name in warning.getMessage()
    assert "has 3 partitions, fewer than the 6 asked for" in warning.getMessage()
    partitions = kafka_admin.list_topics(topic_name, timeout=10).topics[topic_name].partitions
    assert len(partitions) == 3, "an existing topic is never resized"


def test_ensure_topic_refuses_what_the_cluster_cannot_do(
    kafka_server: KafkaServer, topic_name: str
) -> None:
    with pytest.raises(ConfigError, match=topic_name):
        ensure_topic(kafka_server.bootstrap, topic_name, 1, replication=3)


def test_a_member_commits_what_the_store_applied_but_a_killed_member_did_not_commit(
    kafka_server: KafkaServer,
    producer: KafkaProducer,
    consumers: Callable[[], KafkaConsumer],
    tmp_path: Path,
) -> None:
    """A processor killed between its store write and its offset commit leaves the group's
    committed offsets behind the store. The next member reads nothing new, so it must
    commit the store's offsets itself; otherwise the lag the group reports (the gauge, and
    the broker's figure an autoscaler reads) stays at the uncommitted records for good."""
    producer.produce(make_events(["a", "b", "c"], per_user=4))
    store = MemoryFeatureStore()
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    settings = EngineSettings()

    first = consumers()
    killed = Processor(first, store, catalog, settings, ProcessorMetrics())
    killed.resume()
    first.commit = lambda offsets: None  # type: ignore[method-assign]  # the crash window
    wait_until(lambda: killed.run_once(100, 0.2).records == 0 and store.applied_offsets(), 30)
    assert store.applied_offsets() == {0: 12}
    first.close()

    second = consumers()
    metrics = ProcessorMetrics()
    taking_over = Processor(second, store, catalog, settings, metrics)
    taking_over.resume()
    wait_until(lambda: taking_over.run_once(100, 0.2) and second.lag() == {0: 0}, timeout_s=30)
    gauge = metrics.consumer_lag.labels("reco-processor", "0")._value.get()
    assert gauge == 0
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    group = second.group
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(second.topic, 0)])]
    )[group].result()
    assert [tp.offset for tp in offsets.topic_partitions] == [12], "the broker has it too"
    catalog.close()
