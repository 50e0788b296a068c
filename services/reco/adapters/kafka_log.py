"""The event log on Apache Kafka (confluent-kafka / librdkafka): producer, group consumer, topics.

Ingest answers 202 only once Kafka holds the event, so ``KafkaProducer.produce`` waits for
the delivery report of every event of the call and turns any failure or timeout into
``BackendUnavailable`` (ingest answers 503; the client sends again; the processor drops the
duplicates by event id). The processor keeps its own offsets in the feature store, so
``KafkaConsumer`` starts each partition where the store says (``seek``), commits only what
it is told, and treats the group's committed offsets as progress reporting (``lag``) and as
a hint, never as the truth.

Only this module imports ``confluent_kafka`` (import-linter contract ``backends``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # admin re-exports it, but not for mypy

from reco.events import Event
from reco.exceptions import BackendFailed, BackendUnavailable, ConfigError
from reco.ports import Record

log = logging.getLogger(__name__)

DEAD_LETTER_SUFFIX = ".dlq"

# Client settings that every client of one cluster shares (where and how to connect), as
# opposed to producer- or consumer-only tuning. The dead-letter producer and the admin client
# of a consumer take these from the consumer's ``config`` so one set of credentials suffices.
_CONNECTION_PREFIXES = ("bootstrap.", "security.", "sasl.", "ssl.", "socket.", "broker.")

# How long a delivery report may trail librdkafka's own message timeout: reports of expired
# messages are raised by a periodic scan, so ``message.timeout.ms`` is set this much (at most
# a quarter of the deadline) below the caller's deadline, and a timeout is normally reported
# with librdkafka's own reason.
_REPORT_MARGIN_S = 0.5
# While waiting for its reports, ``produce`` flushes in slices this long: ``flush()`` makes
# librdkafka send at once (it ignores ``linger.ms``), and between slices the call checks its
# own reports, since with concurrent callers the queue may never be empty as a whole.
_WAIT_SLICE_S = 0.01
# The ``lag()`` queries (committed offsets, watermarks) are broker round trips made on the
# processor's thread; a short timeout keeps a dead broker from stalling a batch for long.
_LAG_QUERY_TIMEOUT_S = 1.0
# Poison records are read by people, later: keep them longer than the event stream.
_DEAD_LETTER_RETENTION_MS = 30 * 24 * 3600 * 1000

# Commit errors that only mean this member no longer owns the partitions (a rebalance went
# on). Nothing is lost: the feature store holds the offsets it applied, and the next owner
# skips what the store has.
_LOST_OWNERSHIP = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError.STALE_MEMBER_EPOCH,
        KafkaError._ASSIGNMENT_LOST,
    }
)
# Topic creation errors a person must fix (not a passing outage).
_BAD_TOPIC_REQUEST = frozenset(
    {
        KafkaError.INVALID_PARTITIONS,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError.INVALID_CONFIG,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


def _connection(config: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (config or {}).items() if k.startswith(_CONNECTION_PREFIXES)}


def _error_of(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


# -- topics ------------------------------------------------------------------------------


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    replication: int = 1,
    config: Mapping[str, str] | None = None,
    *,
    client_config: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> int:
    """Create ``topic`` unless it exists; return how many partitions it has.

    Idempotent: an existing topic is fine. One with fewer partitions than asked is left as
    it is, with a warning: adding partitions moves keys to other partitions (a user's events
    would no longer be in order), so it is an operator's decision, not a side effect of a
    start. ``replication=-1`` takes the broker's ``default.replication.factor``.
    ``client_config`` carries connection settings (security) for the admin client.

    Raises ``ConfigError`` when the cluster refuses the request (bad replication factor,
    policy, authorization) and ``BackendUnavailable`` when it cannot be reached.
    """
    settings: dict[str, Any] = {
        **_connection(client_config),
        "bootstrap.servers": bootstrap,
        "logger": log,
    }
    admin = AdminClient(settings)
    new_topic = NewTopic(
        topic, num_partitions=partitions, replication_factor=replication, config=dict(config or {})
    )
    futures = admin.create_topics(
        [new_topic], operation_timeout=timeout_s, request_timeout=timeout_s
    )
    created = True
    try:
        futures[topic].result(timeout=timeout_s + 5)
    except KafkaException as exc:
        error = _error_of(exc)
        if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            if error is not None and error.code() in _BAD_TOPIC_REQUEST:
                raise ConfigError(f"cannot create topic {topic}: {error.str()}") from exc
            raise BackendUnavailable(f"cannot create topic {topic} at {bootstrap}: {exc}") from exc
        created = False
    except concurrent.futures.TimeoutError as exc:
        raise BackendUnavailable(
            f"creating topic {topic} at {bootstrap} took over {timeout_s:.0f} s"
        ) from exc

    actual = _wait_for_leaders(admin, topic, partitions if created else None, timeout_s)
    if created:
        log.info("created topic %s: %d partitions, replication %d", topic, actual, replication)
    elif actual < partitions:
        log.warning(
            "topic %s has %d partitions, fewer than the %d asked for: at most %d consumers of "
            "a group get records; add partitions with kafka-topics --alter --partitions %d "
            "if that is meant (it moves keys, so one user's events lose their order once)",
            topic,
            actual,
            partitions,
            actual,
            partitions,
        )
    else:
        log.debug("topic %s exists with %d partitions", topic, actual)
    return actual


def _wait_for_leaders(
    admin: AdminClient, topic: str, expected: int | None, timeout_s: float
) -> int:
    """Metadata trails topic creation: producing before each partition has a leader fails."""
    deadline = time.monotonic() + timeout_s
    last = "no metadata"
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(topic=topic, timeout=min(5.0, timeout_s)).topics.get(topic)
        except KafkaException as exc:
            last = str(exc)
        else:
            if metadata is None or metadata.error is not None:
                last = str(metadata.error if metadata is not None else "topic not listed")
            elif (
                metadata.partitions
                and (expected is None or len(metadata.partitions) == expected)
                and all(p.leader >= 0 for p in metadata.partitions.values())
            ):
                return len(metadata.partitions)
            else:
                last = f"{len(metadata.partitions)} partitions, not all with a leader"
        time.sleep(0.05)
    raise BackendUnavailable(f"topic {topic} not ready within {timeout_s:.0f} s: {last}")


# -- producer ----------------------------------------------------------------------------


class _Deliveries:
    """The delivery reports of one ``produce`` call. Reports may be served on another
    caller's thread (any ``poll``/``flush`` serves them all); ``list.append`` is atomic, so
    no lock is needed."""

    __slots__ = ("errors", "reports")

    def __init__(self) -> None:
        self.reports: list[None] = []
        self.errors: list[KafkaError] = []

    def __call__(self, error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            self.errors.append(error)
        self.reports.append(None)


class KafkaProducer:
    """Appends events to one topic; ``produce`` returns once the broker acknowledged all.

    Thread-safe: ingest calls ``produce`` from many request threads on one instance.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        delivery_timeout_s: float = 10.0,
        compression: str = "zstd",
        ready_timeout_s: float = 1.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """``delivery_timeout_s`` bounds one ``produce`` call. 10 s rides out a leader
        election in a healthy cluster yet answers 503 well before the usual 30 s timeouts
        of proxies and clients. ``config`` adds to or overrides the librdkafka settings.
        """
        if delivery_timeout_s <= 0:
            raise ConfigError(f"delivery_timeout_s must be positive, not {delivery_timeout_s}")
        margin_s = min(_REPORT_MARGIN_S, delivery_timeout_s / 4)
        self.topic = topic
        self.bootstrap = bootstrap
        self._timeout_s = delivery_timeout_s
        self._ready_timeout_s = ready_timeout_s
        self._settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": "reco-ingest",
            # Exactly one copy per event, in order, even when the client retries a request
            # whose acks got lost; idempotence implies acks=all, which we state anyway: an
            # event is acknowledged only once every in-sync replica has it.
            "enable.idempotence": True,
            "acks": "all",
            # zstd, measured (benchmarks/kafka_log.py, 100k events of ~230 B of JSON): the
            # broker stores 52 B/event with zstd, 89 with lz4 (random hex ids are where lz4
            # loses: it cannot entropy-code them), and neither produce nor consume throughput
            # differs beyond run-to-run noise, since the Python loop, not the codec, costs.
            # A smaller log means longer retention on the same disks (a feature rebuild
            # replays it) and less I/O for the two groups that read everything.
            "compression.type": compression,
            # Each call enqueues its events and then flushes, and flush() sends at once
            # whatever linger says. So linger only has to outlast the enqueue loop of one
            # request (1000 events take ~2 ms), for the request's events to leave as one
            # batch per partition instead of a first lone record followed by the rest.
            # batch.size (1 MB) and batch.num.messages (10 000) already hold one request
            # (RECO_MAX_BATCH_EVENTS, 1000 by default).
            "linger.ms": 5,
            # The same hash as Kafka's Java producer: a user's partition does not depend on
            # which client wrote the event (replay tools, Kafka Connect, Streams jobs).
            "partitioner": "murmur2_random",
            # A missing topic is an error to report (ready() is false), not one for the
            # broker to create with its default partition count behind the operator's back.
            "allow.auto.create.topics": False,
            # librdkafka gives up on an event by itself a little before our deadline, so a
            # timeout is reported with its reason and no event outlives the call for long.
            "message.timeout.ms": max(1, int((delivery_timeout_s - margin_s) * 1000)),
            "error_cb": self._on_error,
            "logger": log,
            **(config or {}),
        }
        self._lock = threading.Lock()
        self._fatal: KafkaError | None = None
        self._producer = Producer(self._settings)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
            log.error("producer for %s: fatal error %s; it will be recreated", self.topic, error)
        else:
            log.warning("producer for %s: %s", self.topic, error)

    def _client(self) -> Producer:
        """The producer, recreated after a fatal error (an idempotent producer that lost
        its sequence state refuses every later event until replaced)."""
        if self._fatal is None:
            return self._producer
        with self._lock:
            if self._fatal is not None:
                old = self._producer
                self._producer = Producer(self._settings)
                self._fatal = None
                old.purge()
        return self._producer

    def produce(self, events: Sequence[Event]) -> None:
        """Append ``events`` keyed by user; return once every one is acknowledged.

        Raises ``BackendUnavailable`` on the first failed delivery or when the deadline
        passes. Events of a failed call may still land (a report can be lost after the
        write): the client sends again and the processor drops the duplicates by event id.
        """
        if not events:
            return
        deadline = time.monotonic() + self._timeout_s
        producer = self._client()
        deliveries = _Deliveries()
        for event in events:
            self._enqueue(producer, event, deliveries, deadline)
        while len(deliveries.reports) < len(events) and not deliveries.errors:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = len(events) - len(deliveries.reports)
                raise BackendUnavailable(
                    f"topic {self.topic}: {missing} of {len(events)} events not acknowledged "
                    f"within {self._timeout_s:.1f} s"
                )
            producer.flush(min(remaining, _WAIT_SLICE_S))
        if deliveries.errors:
            error = deliveries.errors[0]
            log.warning(
                "topic %s: %d of %d events failed: %s",
                self.topic,
                len(deliveries.errors),
                len(events),
                error,
            )
            raise BackendUnavailable(f"topic {self.topic}: event not acknowledged: {error.str()}")

    def _enqueue(
        self, producer: Producer, event: Event, deliveries: _Deliveries, deadline: float
    ) -> None:
        while True:
            try:
                producer.produce(
                    self.topic,
                    value=event.to_json(),
                    key=event.user_id.encode(),
                    on_delivery=deliveries,
                )
                return
            except BufferError:
                # The local queue is full (queue.buffering.max.messages): serve delivery
                # reports until there is room. Dropping the event is never an option.
                if time.monotonic() >= deadline:
                    raise BackendUnavailable(
                        f"topic {self.topic}: local queue still full after "
                        f"{self._timeout_s:.1f} s; the broker does not keep up"
                    ) from None
                producer.poll(0.05)
            except KafkaException as exc:
                raise BackendUnavailable(f"topic {self.topic}: {exc}") from exc

    def ready(self) -> bool:
        """The topic's metadata answers and every partition has a leader."""
        if self._fatal is not None:
            return False
        try:
            metadata = self._producer.list_topics(self.topic, timeout=self._ready_timeout_s)
        except KafkaException as exc:
            log.debug("topic %s not ready: %s", self.topic, exc)
            return False
        topic = metadata.topics.get(self.topic)
        return bool(
            topic is not None
            and topic.error is None
            and topic.partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        )

    def close(self) -> None:
        """Wait for what is in flight (its callers are waiting too), then drop the rest."""
        left = self._producer.flush(self._timeout_s)
        if left:
            log.warning("topic %s: %d events undelivered at close", self.topic, left)
            self._producer.purge()


# -- consumer ----------------------------------------------------------------------------


class KafkaConsumer:
    """One member of a consumer group reading one topic in batches.

    Not thread-safe: one processor thread polls, commits and asks for lag. Rebalance
    callbacks run inside ``poll`` on that thread.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        config: Mapping[str, Any] | None = None,
        dead_letter_topic: str | None = None,
        lag_refresh_s: float = 1.0,
        timeout_s: float = 10.0,
    ) -> None:
        """``config`` adds to or overrides the librdkafka settings (its connection settings
        also serve the dead-letter producer); ``timeout_s`` bounds commit and dead-letter
        writes; ``lag_refresh_s`` is how stale ``lag()`` may be."""
        self.topic = topic
        self.group = group
        self.bootstrap = bootstrap
        self.dead_letter_topic = dead_letter_topic or f"{topic}{DEAD_LETTER_SUFFIX}"
        self._config = dict(config or {})
        self._timeout_s = timeout_s
        self._lag_refresh_s = lag_refresh_s
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": f"reco-{group}",
            # Offsets are committed by the processor after its store write, never by a timer.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Our producers are idempotent, not transactional, so this costs nothing today;
            # it keeps records of an aborted transaction (a future exactly-once replay tool)
            # out of the features.
            "isolation.level": "read_committed",
            # Incremental rebalances: a member joining or leaving moves only the partitions
            # that must move; the others keep flowing (no stop-the-world per scale event).
            "partition.assignment.strategy": "cooperative-sticky",
            "error_cb": self._on_error,
            "logger": log,
            **self._config,
        }
        # The KIP-848 protocol assigns on the broker and refuses a client-side strategy;
        # its assignments are incremental, as with cooperative-sticky.
        if settings.get("group.protocol") == "consumer":
            settings.pop("partition.assignment.strategy", None)
        self._incremental = (
            settings.get("group.protocol") == "consumer"
            or settings.get("partition.assignment.strategy") == "cooperative-sticky"
        )

        self._start: dict[int, int] = {}
        self._seeked = False
        self._assigned: set[int] = set()
        self._assignments = 0
        self._committed: dict[int, int] = {}
        self._low: dict[int, int] = {}
        self._high: dict[int, int] = {}
        self._lag_at = float("-inf")
        self._fatal: KafkaError | None = None
        self._dead_letters: Producer | None = None
        self._closed = False
        self._consumer = Consumer(settings)
        self._consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    # -- group membership ------------------------------------------------------------------

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
            log.error("consumer %s of %s: fatal error %s", self.group, self.topic, error)
        else:
            log.warning("consumer %s of %s: %s", self.group, self.topic, error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            tp.offset = self._start_offset(tp.partition)
            log.info(
                "group %s: assigned %s[%d] from offset %s",
                self.group,
                self.topic,
                tp.partition,
                _offset_name(tp.offset),
            )
        # Assign explicitly: the automatic assignment after the callback would ignore the
        # offsets set above.
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if partitions:
            self._assigned.update(tp.partition for tp in partitions)
            self._assignments += 1
            self._lag_at = float("-inf")  # ask the broker at the next lag()

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            log.info("group %s: revoked %s[%d]", self.group, self.topic, tp.partition)
        self._forget({tp.partition for tp in partitions})

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            log.warning(
                "group %s: lost %s[%d] (session expired?)", self.group, self.topic, tp.partition
            )
        self._forget({tp.partition for tp in partitions})

    def _forget(self, partitions: set[int]) -> None:
        self._assigned -= partitions
        for known in (self._committed, self._low, self._high):
            for p in partitions:
                known.pop(p, None)

    def _start_offset(self, partition: int) -> int:
        if partition in self._start:
            return self._start[partition]
        if self._seeked:
            return OFFSET_BEGINNING
        return OFFSET_INVALID  # never seeked: the group's committed offset, else earliest

    def assignments(self) -> int:
        """How many rebalances brought this member partitions. With cooperative-sticky a
        rebalance that only takes partitions away calls on_assign with an empty list; such a
        call is not counted, since no partition came from another member."""
        return self._assignments

    # -- reading -----------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records; waits at most ``timeout_s`` for the first one.

        ``consume(n, t)`` waits until it has ``n`` messages or ``t`` passed, which would hold
        a trickle of events for the whole timeout. So the first call waits for one message
        and the second takes, without waiting, what librdkafka has already fetched (under
        load, whole fetch responses: batches stay large).
        """
        self._raise_if_fatal()
        deadline = time.monotonic() + timeout_s
        records: list[Record] = []
        while len(records) < max_records:
            if records:
                messages = self._consume(max_records - len(records), 0)
            else:
                messages = self._consume(1, max(0.0, deadline - time.monotonic()))
            if not messages:
                break
            records.extend(self._records(messages, have=bool(records)))
            if not records and time.monotonic() >= deadline:
                break
        return records

    def _consume(self, count: int, timeout_s: float) -> list[Message]:
        try:
            return self._consumer.consume(count, timeout_s)
        except KafkaException as exc:
            raise BackendUnavailable(f"consuming {self.topic} as {self.group}: {exc}") from exc

    def _records(self, messages: list[Message], *, have: bool) -> list[Record]:
        records: list[Record] = []
        for msg in messages:
            error = msg.error()
            if error is None:
                key = msg.key()
                records.append(
                    Record(
                        partition=msg.partition() or 0,
                        offset=msg.offset() or 0,
                        key=key.decode("utf-8", "replace") if key is not None else None,
                        value=msg.value() or b"",
                    )
                )
            elif error.code() == KafkaError._PARTITION_EOF:
                continue  # only with enable.partition.eof: the end of a partition, no record
            elif error.fatal():
                # Hand over the records in hand first; the next poll raises.
                self._fatal = error
            else:
                log.warning(
                    "group %s: %s[%s] offset %s: %s",
                    self.group,
                    msg.topic() or self.topic,
                    msg.partition(),
                    msg.offset(),
                    error,
                )
        if not records and not have:
            self._raise_if_fatal()
        return records

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise BackendFailed(
                f"consumer {self.group} of {self.topic} hit a fatal error and must be "
                f"recreated (restart the processor): {self._fatal}"
            )

    def seek(self, offsets: Mapping[int, int]) -> None:
        """Continue at ``offsets`` (the feature store's applied offsets); partitions not
        listed start from the beginning of the log.

        The offsets serve the partitions assigned now (repositioned at once: after a failed
        batch the processor seeks back to what the store has) and those assigned later
        (in ``on_assign``). A partition the store does not list starts at the beginning
        even when the group has a committed offset for it: the store is the truth, and a
        store that lost its data (an emptied Redis) must be rebuilt from the whole log. The
        committed offset only says how far the log was read, not what the features hold.
        Until ``seek`` is called, partitions start at the group's committed offset.

        A partition assigned later starts at the offset given here, or at this member's own
        last commit for it, whichever came later. When another member moved it on meanwhile
        that is behind the store: the processor skips those records as replays after it
        re-reads the store on ``assignments()`` changing. Correct, but it reads them again.
        """
        self._start = dict(offsets)
        self._seeked = True
        for partition in sorted(self._assigned):
            target = self._start_offset(partition)
            try:
                self._consumer.seek(TopicPartition(self.topic, partition, target))
            except KafkaException as exc:
                raise BackendUnavailable(
                    f"seek {self.topic}[{partition}] to offset {_offset_name(target)}: {exc}"
                ) from exc
            log.info(
                "group %s: %s[%d] continues at offset %s",
                self.group,
                self.topic,
                partition,
                _offset_name(target),
            )

    # -- progress ----------------------------------------------------------------------------

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit synchronously, per partition, the offset of the next record to read.

        Only partitions this member holds are committed: a partition revoked in the meantime
        belongs to another member, whose progress must not be overwritten.
        """
        mine = {p: o for p, o in offsets.items() if p in self._assigned}
        for p in sorted(set(offsets) - set(mine)):
            log.info(
                "group %s: not committing %s[%d] offset %d: no longer assigned here",
                self.group,
                self.topic,
                p,
                offsets[p],
            )
        if not mine:
            return
        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(mine.items())]
        try:
            results = self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(mine, _error_of(exc), exc)
            return
        for tp in results:
            if tp.error is not None:
                self._commit_failed({tp.partition: tp.offset}, tp.error, None)
                continue
            self._committed[tp.partition] = tp.offset
            self._start[tp.partition] = tp.offset

    def _commit_failed(
        self, offsets: Mapping[int, int], error: KafkaError | None, exc: Exception | None
    ) -> None:
        where = ", ".join(f"{self.topic}[{p}] offset {o}" for p, o in sorted(offsets.items()))
        if error is not None and error.code() in _LOST_OWNERSHIP:
            log.warning("group %s: commit of %s dropped: %s", self.group, where, error)
            return
        raise BackendUnavailable(f"group {self.group}: commit of {where} failed: {error or exc}")

    def lag(self) -> dict[int, int]:
        """Per assigned partition: the log's end minus the group's committed offset (the
        log's start when nothing is committed).

        The end comes from librdkafka's cache, which every fetch response updates, at no
        cost. Asking the broker (``cached=False``) is kept for partitions whose end is not
        known yet, at most once per ``lag_refresh_s``: measured, each such call waits behind
        the member's own long-polling fetch on the connection (``fetch.wait.max.ms``,
        500 ms), and the processor asks after every poll. Under a backlog the cache trails
        by as long as a partition's prefetch queue stays full, which the processor drains.
        """
        if not self._assigned:
            return {}
        now = time.monotonic()
        if now - self._lag_at >= self._lag_refresh_s:
            self._lag_at = now
            self._refresh_offsets()
        lags: dict[int, int] = {}
        for p in sorted(self._assigned):
            low, high = self._watermarks(p)
            committed = self._committed.get(p, -1)
            base = committed if committed >= 0 else low
            if high >= 0 and base >= 0:
                lags[p] = max(0, high - base)
        return lags

    def _watermarks(self, partition: int) -> tuple[int, int]:
        """Start and end of ``partition`` as far as known without asking; -1 when not."""
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), cached=True
            )
        except KafkaException:
            low = high = -1
        return max(low, self._low.get(partition, -1)), max(high, self._high.get(partition, -1))

    def _refresh_offsets(self) -> None:
        unknown = [
            TopicPartition(self.topic, p) for p in sorted(self._assigned - set(self._committed))
        ]
        try:
            if unknown:
                for tp in self._consumer.committed(unknown, timeout=_LAG_QUERY_TIMEOUT_S):
                    self._committed[tp.partition] = tp.offset
            for p in sorted(self._assigned):
                low, high = self._watermarks(p)
                if high >= 0 and (low >= 0 or self._committed.get(p, -1) >= 0):
                    continue
                self._low[p], self._high[p] = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=_LAG_QUERY_TIMEOUT_S, cached=False
                )
        except KafkaException as exc:
            # Stop at the first failure: a dead broker must not cost a timeout per partition.
            log.warning("group %s: lag of %s not refreshed: %s", self.group, self.topic, exc)

    # -- poison records ------------------------------------------------------------------------

    def dead_letter(self, record: Record, reason: str) -> None:
        """Write ``record`` as it was read to ``<topic>.dlq`` with why and where it came from;
        return once the broker has it (the processor commits past it right after)."""
        producer = self._dead_letter_producer()
        deliveries = _Deliveries()
        headers: list[tuple[str, str | bytes | None]] = [
            ("reason", reason.encode()),
            ("source-topic", self.topic.encode()),
            ("source-partition", str(record.partition).encode()),
            ("source-offset", str(record.offset).encode()),
        ]
        where = f"{self.topic}[{record.partition}] offset {record.offset}"
        try:
            producer.produce(
                self.dead_letter_topic,
                value=record.value,
                key=record.key.encode() if record.key is not None else None,
                headers=headers,
                on_delivery=deliveries,
            )
        except (BufferError, KafkaException) as exc:
            raise BackendUnavailable(f"dead-lettering {where}: {exc}") from exc
        producer.flush(self._timeout_s)
        if deliveries.errors or not deliveries.reports:
            why = deliveries.errors[0].str() if deliveries.errors else "no acknowledgement"
            raise BackendUnavailable(f"dead-lettering {where} to {self.dead_letter_topic}: {why}")
        log.warning("dead-lettered %s to %s: %s", where, self.dead_letter_topic, reason)

    def _dead_letter_producer(self) -> Producer:
        if self._dead_letters is None:
            # One partition: poison records are rare and read in order of arrival. The
            # broker's default replication factor, which suits its cluster.
            ensure_topic(
                self.bootstrap,
                self.dead_letter_topic,
                1,
                replication=-1,
                config={"retention.ms": str(_DEAD_LETTER_RETENTION_MS)},
                client_config=self._config,
                timeout_s=self._timeout_s,
            )
            self._dead_letters = Producer(
                {
                    **_connection(self._config),
                    "bootstrap.servers": self.bootstrap,
                    "client.id": f"reco-{self.group}-dlq",
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 0,
                    "message.timeout.ms": int(self._timeout_s * 1000),
                    "logger": log,
                }
            )
        return self._dead_letters

    def close(self) -> None:
        """Leave the group (its partitions move to the others at once); commit nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer %s of %s: close: %s", self.group, self.topic, exc)
        if self._dead_letters is not None:
            self._dead_letters.flush(self._timeout_s)


def _offset_name(offset: int) -> str:
    if offset == OFFSET_BEGINNING:
        return "beginning"
    if offset == OFFSET_INVALID:
        return "committed"
    return str(offset)
