"""``reco processor``: consume Kafka in batches, write features to Redis, then commit.

It serves only probes and metrics over HTTP; SIGTERM finishes the batch in hand, commits,
and leaves the consumer group cleanly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI

from reco.adapters.factory import open_catalog, open_feature_store
from reco.adapters.kafka_log import KafkaConsumer, ensure_topic
from reco.loop import BatchLoop
from reco.metrics import Metrics
from reco.processor import Processor
from reco.services.common import stop_process
from reco.settings import ProcessorSettings
from reco.web.app import base_app


def create_app(settings: ProcessorSettings) -> FastAPI:
    metrics = Metrics()
    parts: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ensure_topic(
            settings.kafka_bootstrap,
            settings.topic,
            settings.topic_partitions,
            settings.topic_replication,
        )
        store = parts["store"] = open_feature_store(
            settings.redis_url.get_secret_value(), settings, prefix=settings.redis_prefix
        )
        catalog = parts["catalog"] = open_catalog(settings.database_url.get_secret_value())
        consumer = parts["consumer"] = KafkaConsumer(
            settings.kafka_bootstrap,
            settings.topic,
            settings.group,
            config={"session.timeout.ms": settings.session_timeout_ms},
        )
        processor = Processor(consumer, store, catalog, settings, metrics, group=settings.group)
        loop = parts["loop"] = BatchLoop(
            processor,
            batch_size=settings.batch_size,
            poll_timeout_s=settings.poll_timeout_s,
            name="reco-processor",
            on_fatal=stop_process,
        )
        loop.start()
        try:
            yield
        finally:
            loop.stop()
            for name in ("consumer", "catalog", "store"):
                with suppress(Exception):
                    parts[name].close()

    return base_app(
        role="processor",
        settings=settings,
        metrics=metrics,
        checks={
            "loop": lambda: "loop" in parts and parts["loop"].alive,
            "redis": lambda: "store" in parts and parts["store"].ready(),
        },
        lifespan=lifespan,
        description="Consumes events from Kafka and keeps the features in Redis current.",
    )
