"""Validate a body of one event or a batch, keep the valid ones, say why the others failed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from reco import tracing
from reco.events import Event, EventValidator, InvalidEvent
from reco.exceptions import BackendTimeout
from reco.metrics import IngestMetrics
from reco.ports import EventProducer
from reco.settings import EngineSettings


class BatchTooLarge(InvalidEvent):
    pass


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


class IngestService:
    def __init__(
        self, producer: EventProducer, settings: EngineSettings, metrics: IngestMetrics
    ) -> None:
        self._producer = producer
        self._validator = EventValidator(settings.event_weights, settings.max_future_skew_s)
        self._max_batch = settings.max_batch_events
        self._metrics = metrics

    def validate(self, body: Any) -> tuple[list[Event], list[dict[str, Any]]]:
        """Valid events and ``{"index", "error"}`` for each invalid one (index 0 for a single)."""
        raws = body if isinstance(body, list) else [body]
        if len(raws) > self._max_batch:
            raise BatchTooLarge(
                f"the batch has {len(raws)} events; the limit is {self._max_batch} "
                "(RECO_MAX_BATCH_EVENTS): split it"
            )
        if not raws:
            raise InvalidEvent("the batch is empty; send at least one event")
        now = time.time()
        parent = tracing.traceparent()
        # A batch of valid events (the usual one) takes the fast path; a batch with some
        # invalid event is validated event by event, which names each one and says why.
        fast = self._validator.validate_batch(raws, now=now, trace=parent)
        if fast is not None:
            return fast, []
        events: list[Event] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(raws):
            try:
                events.append(self._validator.validate(raw, now=now, trace=parent))
            except InvalidEvent as exc:
                rejected.append({"index": index, "error": str(exc)})
        return events, rejected

    def produce(self, events: list[Event], rejected: list[dict[str, Any]]) -> IngestResult:
        """Append the valid events; when this returns they are durable."""
        if events:
            try:
                self._producer.produce(events)
            except BackendTimeout as exc:
                self._metrics.backend_timeouts.labels(exc.backend, exc.operation).inc()
                raise
            self._metrics.events_ingested.inc(len(events))
        if rejected:
            self._metrics.events_rejected.inc(len(rejected))
        return IngestResult(len(events), rejected, [e.event_id for e in events])
