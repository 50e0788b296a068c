"""The api's impression records: written to the event log off the request path.

A recommendation served in an experiment is recorded as an impression (see
``reco.experiments``) for the processor to count and to attribute later events to. The
request only enqueues the record; one thread writes what has queued in batches, so a
response never waits for Kafka's acknowledgement (or for SQLite's commit in embedded mode).

Impressions are best effort where events are not: a record the log refuses, or one that
finds the queue full because the log stalls, is dropped and counted
(``experiment_impressions_dropped_total``); the recommendation it stood for counts in no
variant, which leaves each variant's rates unbiased as long as drops hit variants alike.
"""

from __future__ import annotations

import logging
import queue
import threading

from reco.events import Event
from reco.exceptions import BackendUnavailable
from reco.metrics import ApiMetrics
from reco.ports import EventProducer

log = logging.getLogger(__name__)

_BATCH = 500
_MAX_QUEUED = 50_000


class ImpressionLog:
    """Queues impression records and writes them to ``producer`` from one thread."""

    def __init__(
        self, producer: EventProducer, metrics: ApiMetrics, *, max_queued: int = _MAX_QUEUED
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._queue: queue.Queue[Event | _Marker | None] = queue.Queue(max_queued)
        self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
        self._thread.start()

    def record(self, impression: Event) -> None:
        try:
            self._queue.put_nowait(impression)
        except queue.Full:
            self._metrics.experiment_impressions_dropped.labels("queue_full").inc()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Return once every impression queued before the call is written (or dropped)."""
        done = threading.Event()
        self._queue.put(_Marker(done), timeout=timeout_s)
        done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the thread (the producer is the caller's)."""
        self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[Event | _Marker | None] = [first]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [e for e in batch if isinstance(e, Event)]
            if events:
                self._write(events)
            for item in batch:
                if isinstance(item, _Marker):
                    item.done.set()
            if None in batch:
                return

    def _write(self, events: list[Event]) -> None:
        try:
            self._producer.produce(events)
        except BackendUnavailable as exc:
            self._metrics.experiment_impressions_dropped.labels("log_unavailable").inc(len(events))
            log.warning("%d impression records dropped: %s", len(events), exc)


class _Marker:
    """A place in the queue that ``flush`` waits for (never written)."""

    __slots__ = ("done",)

    def __init__(self, done: threading.Event) -> None:
        self.done = done
