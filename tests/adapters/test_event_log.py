"""The EventProducer / EventConsumer contract, run against every event-log adapter.

The embedded SQLite log has one partition; the Kafka topic here has three, so "in order
per partition" and "per partition offsets" are checked where they can differ.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from reco.adapters.kafka_consumer import KafkaConsumer
from reco.adapters.kafka_producer import KafkaProducer
from reco.adapters.sqlite_log import SqliteConsumer, SqliteEventLog
from reco.events import Event
from reco.ports import EventConsumer, EventProducer, Record
from tests.conftest import wait_until

KAFKA_PARTITIONS = 3
# Generous: the first poll of a Kafka consumer joins the group (a rebalance or two).
RECEIVE_TIMEOUT_S = 30.0


def make_events(users: Sequence[str], per_user: int) -> list[Event]:
    """``per_user`` events per user, interleaved; ``properties["seq"]`` numbers each user's."""
    now = time.time()
    return [
        Event(
            event_id=uuid.uuid4().hex,
            user_id=user,
            item_id=f"item-{seq}",
            type="view",
            timestamp=now + seq,
            received_at=now,
            properties={"seq": seq},
        )
        for seq in range(per_user)
        for user in users
    ]


def poll_until(
    consumer: EventConsumer, count: int, timeout_s: float = RECEIVE_TIMEOUT_S
) -> list[Record]:
    """Poll until ``count`` records arrived, then once more to prove nothing else comes."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records"
        records.extend(consumer.poll(1000, 0.5))
    assert len(records) == count, records[count:]
    assert consumer.poll(1000, 0.3) == []
    return records


def by_partition(records: Sequence[Record]) -> dict[int, list[Record]]:
    grouped: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        grouped[record.partition].append(record)
    return dict(grouped)


@dataclass
class EventLog:
    """One adapter's log for one test: makes producers and members of one consumer group."""

    kind: str
    partitions: int
    _producer: Callable[[], EventProducer]
    _consumer: Callable[[], EventConsumer]
    _dead_letters: Callable[[EventConsumer], list[tuple[int, int, str]]]
    _open: list[EventProducer | EventConsumer] = field(default_factory=list)

    def producer(self) -> EventProducer:
        self._open.append(made := self._producer())
        return made

    def consumer(self) -> EventConsumer:
        self._open.append(made := self._consumer())
        return made

    def dead_letters(self, consumer: EventConsumer) -> list[tuple[int, int, str]]:
        """``(partition, offset, reason)`` of every dead-lettered record, read back."""
        return self._dead_letters(consumer)

    def close(self) -> None:
        for opened in reversed(self._open):
            opened.close()
        self._open.clear()


def _sqlite_log(tmp_path: Path) -> EventLog:
    log = SqliteEventLog(tmp_path / "events.db")

    def dead_letters(consumer: EventConsumer) -> list[tuple[int, int, str]]:
        assert isinstance(consumer, SqliteConsumer)
        return [(0, offset, reason) for offset, reason in consumer.dead_letters()]

    return EventLog("sqlite", 1, log.producer, lambda: log.consumer("g"), dead_letters)


def _kafka_log(request: pytest.FixtureRequest) -> EventLog:
    server = request.getfixturevalue("kafka_server")
    topic = request.getfixturevalue("kafka_topic_factory")(partitions=KAFKA_PARTITIONS)
    group = request.getfixturevalue("kafka_group_id")
    admin = request.getfixturevalue("kafka_admin")
    request.addfinalizer(lambda: admin.delete_topics([f"{topic}.dlq"], operation_timeout=30))

    def dead_letters(consumer: EventConsumer) -> list[tuple[int, int, str]]:
        assert isinstance(consumer, KafkaConsumer)
        return [
            (int(h["source-partition"]), int(h["source-offset"]), h["reason"].decode())
            for _, h in read_topic(server.bootstrap, consumer.dead_letter_topic)
        ]

    return EventLog(
        "kafka",
        KAFKA_PARTITIONS,
        lambda: KafkaProducer(server.bootstrap, topic, delivery_timeout_s=10),
        lambda: KafkaConsumer(server.bootstrap, topic, group, lag_refresh_s=0.2),
        dead_letters,
    )


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 10.0
) -> list[tuple[Message, dict[str, bytes]]]:
    """Every message of partition 0 of ``topic`` with its headers, read without a group."""
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.partition.eof": True}
    )
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        found: list[tuple[Message, dict[str, bytes]]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                break  # end of the partition
            headers = msg.headers() or []
            assert isinstance(headers, list)
            found.append((msg, {k: v if isinstance(v, bytes) else b"" for k, v in headers}))
        return found
    finally:
        reader.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("kafka", marks=pytest.mark.integration),
    ]
)
def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    log = _sqlite_log(tmp_path) if request.param == "sqlite" else _kafka_log(request)
    yield log
    log.close()


# -- the contract -----------------------------------------------------------------------------


def test_produce_then_poll_in_order_per_partition_from_offset_zero(event_log: EventLog) -> None:
    events = make_events([f"user-{n}" for n in range(8)], per_user=5)
    producer = event_log.producer()
    assert producer.ready()
    producer.produce(events[:20])
    producer.produce(events[20:])

    records = poll_until(event_log.consumer(), len(events))

    for partition, in_partition in by_partition(records).items():
        assert 0 <= partition < event_log.partitions
        assert [r.offset for r in in_partition] == list(range(len(in_partition)))
    sent = {e.event_id: e for e in events}
    got = [Event.from_json(r.value) for r in records]
    assert {e.event_id for e in got} == set(sent)
    assert all(Event.from_json(r.value) == sent[Event.from_json(r.value).event_id] for r in records)
    assert all(r.key == Event.from_json(r.value).user_id for r in records)
    per_user: dict[str, list[int]] = defaultdict(list)
    for event in got:
        per_user[event.user_id].append(event.properties["seq"])
    assert all(seqs == list(range(5)) for seqs in per_user.values())


def test_produce_nothing_is_a_no_op(event_log: EventLog) -> None:
    event_log.producer().produce([])

    assert event_log.consumer().poll(10, 0.5) == []


def _committed_after(records: Sequence[Record], keep: int) -> dict[int, int]:
    """Offsets to commit so that the first ``keep`` records of each partition are done."""
    return {p: min(keep, len(rs)) for p, rs in by_partition(records).items()}


def test_new_member_resumes_after_the_committed_offset_given_to_seek(
    event_log: EventLog,
) -> None:
    events = make_events([f"user-{n}" for n in range(6)], per_user=4)
    event_log.producer().produce(events)
    first = event_log.consumer()
    records = poll_until(first, len(events))
    committed = _committed_after(records, keep=2)
    first.commit(committed)
    first.close()

    second = event_log.consumer()
    second.seek(committed)
    rest = poll_until(second, len(events) - sum(committed.values()))

    assert {(r.partition, r.offset) for r in rest} == {
        (r.partition, r.offset) for r in records if r.offset >= committed[r.partition]
    }


def test_new_member_without_seek_resumes_at_the_groups_committed_offset(
    event_log: EventLog,
) -> None:
    events = make_events([f"user-{n}" for n in range(6)], per_user=3)
    event_log.producer().produce(events)
    first = event_log.consumer()
    records = poll_until(first, len(events))
    committed = _committed_after(records, keep=1)
    first.commit(committed)
    first.close()

    rest = poll_until(event_log.consumer(), len(events) - sum(committed.values()))

    assert all(r.offset >= committed[r.partition] for r in rest)


def test_seek_nothing_starts_from_the_beginning_despite_a_commit(event_log: EventLog) -> None:
    events = make_events(["a", "b", "c", "d"], per_user=3)
    event_log.producer().produce(events)
    first = event_log.consumer()
    records = poll_until(first, len(events))
    first.commit({p: len(rs) for p, rs in by_partition(records).items()})
    first.close()

    second = event_log.consumer()
    second.seek({})  # an empty feature store: rebuild from the whole log

    again = poll_until(second, len(events))
    assert sorted((r.partition, r.offset) for r in again) == sorted(
        (r.partition, r.offset) for r in records
    )


def test_seek_rewinds_a_member_that_already_read(event_log: EventLog) -> None:
    """After a failed batch the processor seeks back to what its store holds."""
    events = make_events(["a", "b", "c", "d", "e"], per_user=3)
    event_log.producer().produce(events)
    consumer = event_log.consumer()
    records = poll_until(consumer, len(events))
    partitions = by_partition(records)

    consumer.seek(dict.fromkeys(partitions, 1))

    again = poll_until(consumer, len(events) - len(partitions))
    assert sorted((r.partition, r.offset) for r in again) == sorted(
        (r.partition, r.offset) for r in records if r.offset >= 1
    )


def test_lag_follows_produce_and_commit(event_log: EventLog) -> None:
    events = make_events([f"user-{n}" for n in range(6)], per_user=2)
    producer = event_log.producer()
    producer.produce(events)
    consumer = event_log.consumer()
    records = poll_until(consumer, len(events))  # a Kafka member has partitions only now
    counts = dict.fromkeys(range(event_log.partitions), 0)
    counts.update({p: len(rs) for p, rs in by_partition(records).items()})

    wait_until(lambda: consumer.lag() == counts, timeout_s=10)

    consumer.commit({p: 1 for p, n in counts.items() if n})
    after_commit = {p: max(0, n - 1) for p, n in counts.items()}
    # Lag counts from the acknowledged commit; Kafka's acknowledgement arrives in a poll.
    wait_until(lambda: consumer.poll(100, 0.05) == [] and consumer.lag() == after_commit, 10)

    more = make_events(["user-0"], per_user=3)
    producer.produce(more)
    grown = dict(after_commit)
    grown[next(r.partition for r in records if r.key == "user-0")] += 3
    wait_until(lambda: consumer.lag() == grown, timeout_s=10)


def test_dead_letter_keeps_the_record_with_its_reason(event_log: EventLog) -> None:
    event_log.producer().produce(make_events(["a", "b"], per_user=2))
    consumer = event_log.consumer()
    records = poll_until(consumer, 4)
    poison = records[1]

    consumer.dead_letter(poison, "undecodable event record: bad JSON")

    assert event_log.dead_letters(consumer) == [
        (poison.partition, poison.offset, "undecodable event record: bad JSON")
    ]


def test_poll_with_nothing_returns_empty_within_about_the_timeout(event_log: EventLog) -> None:
    consumer = event_log.consumer()
    for _ in range(2):  # the first Kafka poll also joins the group
        started = time.monotonic()
        assert consumer.poll(100, 0.5) == []
        assert 0.4 <= time.monotonic() - started < 2.0


def test_poll_returns_what_is_there_without_waiting_for_a_full_batch(
    event_log: EventLog,
) -> None:
    consumer = event_log.consumer()
    consumer.poll(10, 0.5)  # joined
    event_log.producer().produce(make_events(["a"], per_user=3))
    got: list[Record] = []
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while len(got) < 3 and time.monotonic() < deadline:
        started = time.monotonic()
        got.extend(consumer.poll(1000, 5.0))
        assert time.monotonic() - started < 4.0, "poll waited to fill the batch"
    assert [r.offset for r in got] == [0, 1, 2]


def test_assignments_count_the_partitions_given_to_a_member(event_log: EventLog) -> None:
    event_log.producer().produce(make_events(["a", "b", "c"], per_user=1))
    consumer = event_log.consumer()
    poll_until(consumer, 3)

    assert consumer.assignments() == 1
    consumer.poll(10, 0.2)
    assert consumer.assignments() == 1
