"""The event log's producer on Kafka: ``produce`` returns once Kafka acknowledged every event.

Ingest answers 202 only once Kafka holds the event, so ``KafkaProducer.produce`` waits for
the delivery report of every event of the call and turns any failure or timeout into
``BackendUnavailable`` (ingest answers 503; the client sends again; the processor drops the
duplicates by event id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    KafkaError,
    KafkaException,
    Message,
    Producer,
)

from reco.events import Event
from reco.exceptions import BackendTimeout, BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

# How long a delivery report may trail librdkafka's own message timeout: reports of expired
# messages are raised by a periodic scan, so ``message.timeout.ms`` is set this much (at most
# a quarter of the deadline) below the caller's deadline, and a timeout is normally reported
# with librdkafka's own reason.
_REPORT_MARGIN_S = 0.5


# While waiting for its reports, ``produce`` polls in slices this long, checking its own
# reports between them (with concurrent callers the queue may never be empty as a whole).
# It polls rather than flushes: ``flush()`` makes librdkafka send at once whatever
# ``linger.ms`` says, so each request left as its own small batches; polled, the events of
# concurrent requests share a batch per partition.
_WAIT_SLICE_S = 0.01


class Deliveries:
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
            # A request's events wait this long for those of concurrent requests, and leave
            # together in one batch per partition. Measured (benchmarks/ingest.py, batches
            # of 1000 over 2 connections, one broker, 4 partitions): against flushing each
            # request at once, the producer's network thread spends 1.0-1.3 µs an event
            # instead of 2.2-3.6, and the whole process serves more events a second; 2 ms
            # batches less, 10 or 20 ms only add latency (each call waits for its acks).
            # batch.size (1 MB) and batch.num.messages (10 000) hold several requests
            # (RECO_MAX_BATCH_EVENTS, 1000 by default, of ~150 B each) per batch.
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
        deliveries = Deliveries()
        produce, topic = producer.produce, self.topic
        try:
            for event in events:
                value, key = event.to_json(), event.user_id.encode()
                try:
                    produce(topic, value, key, on_delivery=deliveries)
                except BufferError:
                    self._enqueue(producer, value, key, deliveries, deadline)
        except KafkaException as exc:
            raise BackendUnavailable(f"topic {topic}: {exc}") from exc
        while len(deliveries.reports) < len(events) and not deliveries.errors:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = len(events) - len(deliveries.reports)
                raise BackendTimeout(
                    "kafka",
                    "produce",
                    f"topic {self.topic}: {missing} of {len(events)} events not acknowledged "
                    f"within {self._timeout_s:.1f} s",
                )
            producer.poll(min(remaining, _WAIT_SLICE_S))
        if deliveries.errors:
            error = deliveries.errors[0]
            log.warning(
                "topic %s: %d of %d events failed: %s",
                self.topic,
                len(deliveries.errors),
                len(events),
                error,
            )
            message = f"topic {self.topic}: event not acknowledged: {error.str()}"
            if error.code() == KafkaError._MSG_TIMED_OUT:
                raise BackendTimeout("kafka", "produce", message)
            raise BackendUnavailable(message)

    def _enqueue(
        self, producer: Producer, value: bytes, key: bytes, deliveries: Deliveries, deadline: float
    ) -> None:
        """Enqueue one event once the local queue has room again."""
        while True:
            try:
                producer.produce(self.topic, value, key, on_delivery=deliveries)
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
