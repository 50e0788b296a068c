"""The event log's group consumer on Kafka, for the processor, the archiver and rebuilds.

The processor keeps its own offsets in the feature store, so ``KafkaConsumer`` starts each
partition where the store says (``seek``), commits only what it is told, and treats the
group's committed offsets as progress reporting (``lag``) and as a hint, never as the truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
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

from reco.adapters.kafka_producer import Deliveries
from reco.adapters.kafka_topics import (
    DEAD_LETTER_SUFFIX,
    connection_settings,
    ensure_topic,
    error_of,
)
from reco.exceptions import BackendFailed, BackendUnavailable
from reco.ports import Record

log = logging.getLogger(__name__)

# The ``lag()`` queries (committed offsets, watermarks) are broker round trips made on the
# processor's thread; a short timeout keeps a dead broker from stalling a batch for long.
_LAG_QUERY_TIMEOUT_S = 1.0


# Poison records are read by people, later: keep them longer than the event stream.
_DEAD_LETTER_RETENTION_MS = 30 * 24 * 3600 * 1000


# A failed commit is sent again no sooner than this: the poll loop runs every few
# milliseconds, and a coordinator that is away for a while should not get a commit (and
# the log a warning) each time.
_COMMIT_RETRY_S = 1.0


# librdkafka's ways of saying a request got no answer in time.
_TIMED_OUT = frozenset({KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT})


# Commit errors that mean a rebalance went on: this member may no longer own the
# partitions. Nothing is lost: the feature store holds the offsets it applied, and the next
# owner skips what the store has; partitions still owned are committed again.
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
        on_timeout: Callable[[str, str], None] | None = None,
    ) -> None:
        """``config`` adds to or overrides the librdkafka settings (its connection settings
        also serve the dead-letter producer); ``timeout_s`` bounds dead-letter writes and
        topic creation; ``lag_refresh_s`` is how stale ``lag()`` may be; ``on_timeout``
        is told ``("kafka", operation)`` of each call that timed out (a metrics counter)."""
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
            "on_commit": self._on_commit,
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
        self._requested: dict[int, int] = {}
        self._retry: dict[int, int] = {}
        self._retry_at = 0.0
        self._on_timeout = on_timeout
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
        for known in (self._committed, self._low, self._high, self._requested, self._retry):
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
        if self._retry and time.monotonic() >= self._retry_at:
            self._commit_again()
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
        """Commit, per partition, the offset of the next record to read; return at once.

        Asynchronous, because nothing may wait on the broker without a bound and
        confluent-kafka's synchronous commit has none: with the group coordinator gone
        (a broker restart) it can wait forever, and the consumer with it. Nothing needs to
        wait either: the feature store holds the offsets it applied, and the archive is
        keyed by log position, so a commit that is late or lost only makes a restart read
        again what the sink skips. The outcome arrives in ``_on_commit`` during a later
        poll: success moves what ``lag()`` counts from; a failure is logged with the
        partitions and offsets and committed again at the next poll, unless a newer commit
        of the partition superseded it.

        Only partitions this member holds are committed: a partition revoked in the
        meantime belongs to another member, whose progress must not be overwritten.
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
        for p, o in mine.items():
            self._requested[p] = o
            self._retry.pop(p, None)
        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(mine.items())]
        try:
            self._consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            # Refused before it was sent (no assignment any more, a closed handle).
            self._commit_failed(mine, error_of(exc))

    def _commit_again(self) -> None:
        retry, self._retry = self._retry, {}
        log.info(
            "group %s: committing again %s",
            self.group,
            ", ".join(f"{self.topic}[{p}] offset {o}" for p, o in sorted(retry.items())),
        )
        self.commit(retry)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The broker's answer to a ``commit``, served inside ``poll``."""
        failed: dict[int, int] = {}
        for tp in partitions:
            if tp.topic != self.topic:
                continue
            if error is None and tp.error is None:
                self._committed[tp.partition] = tp.offset
                self._start[tp.partition] = tp.offset
            else:
                failed[tp.partition] = tp.offset
        if failed:
            first = error or next(tp.error for tp in partitions if tp.error is not None)
            self._commit_failed(failed, first)

    def _commit_failed(self, offsets: Mapping[int, int], error: KafkaError | None) -> None:
        """Commit again, a second later, what no newer commit replaced, while the partition
        is still this member's. That includes a commit a rebalance interrupted: the
        partitions the rebalance leaves here (cooperative rebalancing keeps most) would
        otherwise keep the group's offset, and the lag it reports to autoscalers, behind
        until their next record, which a drained partition may never get."""
        where = ", ".join(f"{self.topic}[{p}] offset {o}" for p, o in sorted(offsets.items()))
        code = error.code() if error is not None else None
        if code in _TIMED_OUT and self._on_timeout is not None:
            self._on_timeout("kafka", "commit")
        again = {
            p: o for p, o in offsets.items() if p in self._assigned and self._requested.get(p) == o
        }
        self._retry.update(again)
        self._retry_at = time.monotonic() + _COMMIT_RETRY_S
        log.log(
            logging.INFO if code in _LOST_OWNERSHIP else logging.WARNING,
            "group %s: commit of %s %s, %s: %s",
            self.group,
            where,
            "interrupted by a rebalance" if code in _LOST_OWNERSHIP else "failed",
            "committing again at the next poll" if again else "superseded",
            error,
        )

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
        deliveries = Deliveries()
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
                    **connection_settings(self._config),
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
