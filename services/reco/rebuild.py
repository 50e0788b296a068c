"""``reco rebuild``: delete the features and recompute them from the whole Kafka topic.

It consumes the topic from the beginning in a group of its own, through the processor's
own batch code, so the result is what an uninterrupted processor would have built. The
processors must be stopped meanwhile (one writer); when they start again they find the
store's applied offsets at the end of the topic and carry on from there.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from reco.adapters.factory import open_catalog
from reco.metrics import ProcessorMetrics
from reco.processor import Processor
from reco.services.common import ensure_event_topic, open_consumer, open_store
from reco.settings import ProcessorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildReport:
    records: int
    applied: int
    seconds: float


def rebuild(settings: ProcessorSettings, *, assign_timeout_s: float = 60.0) -> RebuildReport:
    store = open_store(settings)
    catalog = open_catalog(
        settings.database_url.get_secret_value(), timeout_s=settings.postgres_timeout_s
    )
    group = f"reco-rebuild-{uuid.uuid4().hex[:8]}"
    partitions = ensure_event_topic(settings)
    metrics = ProcessorMetrics()
    consumer = open_consumer(settings, group, metrics)
    started = time.perf_counter()
    records = applied = 0
    try:
        store.reset()
        processor = Processor(consumer, store, catalog, settings, metrics, group=group)
        processor.resume()
        deadline = time.monotonic() + assign_timeout_s
        while True:
            result = processor.run_once(settings.batch_size, 1.0)
            records += result.records
            applied += result.applied
            if result.records:
                continue
            if consumer.assignments() == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no partition of {settings.topic} assigned to {group}")
                continue
            lag = consumer.lag()
            # Done when the end of every partition is known and reached: lag() leaves out
            # a partition whose end it could not learn yet.
            if len(lag) == partitions and not any(lag.values()):
                break
        log.info("rebuilt features from %d records of %s", records, settings.topic)
    finally:
        consumer.close()
        catalog.close()
        store.close()
    return RebuildReport(records, applied, time.perf_counter() - started)
