"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter(
            "events_ingested", "Events accepted by ingest and durable in the event log.", registry=r
        )
        self.events_rejected = Counter(
            "events_rejected", "Events refused by validation.", registry=r
        )
        self.events_processed = Counter(
            "events_processed", "Events whose features the processor applied.", registry=r
        )
        self.events_archived = Counter(
            "events_archived", "Events the archiver wrote for the first time.", registry=r
        )
        self.events_skipped = Counter(
            "events_skipped",
            "Records the processor did not apply, by reason.",
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
            "processor_batch_seconds",
            "Time to apply one batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "reco_processor_consumer_lag",
            "Records between the group's committed offset and the end of the log.",
            ["group", "partition"],
            registry=r,
        )
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
        self.model_version = Gauge(
            "reco_model_version", "Version of the embedding model served; 0: none.", registry=r
        )
        self.model_items = Gauge(
            "reco_model_items", "Items with a vector in the served embedding model.", registry=r
        )
        self.model_load_failures = Counter(
            "reco_model_load_failures",
            "Newer model versions that could not be loaded (the last good one stays).",
            registry=r,
        )
        self.fallbacks = Counter(
            "recommendation_fallbacks",
            "Responses padded with or made of popular items, by reason.",
            ["reason"],
            registry=r,
        )
