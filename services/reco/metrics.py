"""Prometheus metrics: each role exports its own families plus the process's, nothing else.

One registry per app, so that several apps live in one process (tests, embedded mode).
Names: the four the product promises keep theirs (``events_ingested_total``,
``events_processed_total``, ``recommendation_latency_seconds``,
``recommendation_cache_hits_total``); every other family starts with what it measures
(``events_``, ``recommendation_``, ``processor_``, ``consumer_``, ``embedding_model_``,
``backend_``) and ends with its unit (``_seconds``, ``_records``, ``_total`` for counters).

The classes compose by cooperative inheritance: a role's class registers its families once,
and embedded mode's class (ingest, processor and api in one process) is the union.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# The *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# A batch of 2000 events takes tens of milliseconds; a rescale or a backend retry, seconds.
_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def process_registry() -> CollectorRegistry:
    """A registry holding the process's own metrics (``process_*``, ``python_*``)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class BackendMetrics:
    """What every role exports: its process, and the calls to its backends that timed out."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else process_registry()
        self.backend_timeouts = Counter(
            "backend_timeouts",
            "Calls to a backend that hit their timeout (RECO_*_TIMEOUT_S); each is retried.",
            ["backend", "operation"],
            registry=self.registry,
        )


class IngestMetrics(BackendMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.events_ingested = Counter(
            "events_ingested", "Events accepted by ingest and durable in the event log.", registry=r
        )
        self.events_rejected = Counter(
            "events_rejected", "Events refused by validation.", registry=r
        )


class ConsumerMetrics(BackendMetrics):
    """A consumer group's member: the processor or the archiver."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.consumer_lag = Gauge(
            "consumer_lag_records",
            "Records between the group's committed offset and the end of the log, per partition "
            "this member holds.",
            ["group", "partition"],
            registry=r,
        )
        self.consumer_member_lag = Gauge(
            "consumer_member_lag_records",
            "Records behind, summed over the partitions this member holds: summed over the "
            "group's pods it is the group's lag (what an autoscaler divides by replicas).",
            ["group"],
            registry=r,
        )
        self._lag_partitions: dict[str, set[str]] = {}
        self.consumer_last_progress = Gauge(
            "consumer_last_progress_timestamp_seconds",
            "When the member last applied a batch or found nothing to read (Unix time); the "
            "watchdog turns /health/live to 503 when this is older than RECO_WATCHDOG_S.",
            ["group"],
            registry=r,
        )

    def export_lag(self, group: str, lags: dict[int, int]) -> None:
        """The lag of the partitions this member holds now. A partition it no longer holds
        (a rebalance gave it to another member) leaves the output, so that summing the
        group's pods never counts a partition twice."""
        held = {str(p): lag for p, lag in lags.items()}
        for gone in self._lag_partitions.get(group, set()) - set(held):
            self.consumer_lag.remove(group, gone)
        for partition, lag in held.items():
            self.consumer_lag.labels(group, partition).set(lag)
        self._lag_partitions[group] = set(held)
        self.consumer_member_lag.labels(group).set(sum(held.values()))


class ProcessorMetrics(ConsumerMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.events_processed = Counter(
            "events_processed", "Events whose features the processor applied.", registry=r
        )
        self.events_skipped = Counter(
            "events_skipped",
            "Records the processor did not apply, by reason (replayed, duplicate, dead_letter).",
            ["reason"],
            registry=r,
        )
        self.batches_refused = Counter(
            "processor_batches_refused",
            "Batches the feature store refused: stale (another writer) or reset (store emptied).",
            ["reason"],
            registry=r,
        )
        self.processor_batch_seconds = Histogram(
            "processor_batch_duration_seconds",
            "Time to apply one batch.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.experiment_events = Counter(
            "experiment_events",
            "Recommendations served in an experiment (kind impressions) and the events "
            "attributed to them (kind: the event type), by experiment and variant.",
            ["experiment", "variant", "kind"],
            registry=r,
        )


class ArchiverMetrics(ConsumerMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.events_archived = Counter(
            "events_archived",
            "Events the archiver wrote for the first time.",
            registry=self.registry,
        )


class ApiMetrics(BackendMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.recommendation_latency = Histogram(
            "recommendation_latency_seconds",
            "Time to compute a recommendation response, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "recommendation_cache_hits", "Responses served from the response cache.", registry=r
        )
        self.cache_misses = Counter(
            "recommendation_cache_misses", "Responses computed afresh.", registry=r
        )
        self.fallbacks = Counter(
            "recommendation_fallbacks",
            "Responses padded with or made of popular items, by reason.",
            ["reason"],
            registry=r,
        )
        self.model_version = Gauge(
            "embedding_model_version",
            "Version of the embedding model served; 0: none.",
            registry=r,
        )
        self.model_items = Gauge(
            "embedding_model_items",
            "Items with a vector in the served embedding model.",
            registry=r,
        )
        self.model_load_failures = Counter(
            "embedding_model_load_failures",
            "Newer model versions that could not be loaded (the last good one stays).",
            registry=r,
        )
        self.ranker_version = Gauge(
            "ranker_model_version",
            "Version of the learned ranker that orders the candidates; 0: the weighted sum.",
            registry=r,
        )
        self.ranker_load_failures = Counter(
            "ranker_model_load_failures",
            "Newer ranker versions that could not be loaded (the last good one stays).",
            registry=r,
        )
        self.tuned_settings_version = Gauge(
            "tuned_settings_version",
            "Version of the reco tune result applied over the configured settings; 0: none.",
            registry=r,
        )
        self.tuned_settings_load_failures = Counter(
            "tuned_settings_load_failures",
            "Newer reco tune results that could not be applied (the last good one stays).",
            registry=r,
        )
        self.experiment_impressions_dropped = Counter(
            "experiment_impressions_dropped",
            "Impression records the api could not write to the event log (full queue, log "
            "unavailable): their recommendations count in no variant.",
            ["reason"],
            registry=r,
        )


class EmbeddedMetrics(IngestMetrics, ProcessorMetrics, ApiMetrics):
    """``reco dev``: ingest, processor and api in one process, one registry."""
