"""``reco ingest``: validate, stamp, produce to Kafka; 202 only once Kafka has the events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from reco.adapters.kafka_producer import KafkaProducer
from reco.ingest import IngestService
from reco.ingest import router as ingest_router
from reco.metrics import IngestMetrics
from reco.services.common import ensure_event_topic
from reco.settings import IngestSettings
from reco.web.app import base_app


def create_app(settings: IngestSettings) -> FastAPI:
    metrics = IngestMetrics()
    state: dict[str, KafkaProducer] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ensure_event_topic(settings)
        producer = state["producer"] = KafkaProducer(
            settings.kafka_bootstrap,
            settings.topic,
            delivery_timeout_s=settings.produce_timeout_s,
            config=settings.kafka_client_config(),
        )
        app.state.ingest = IngestService(producer, settings, metrics)
        try:
            yield
        finally:
            # SIGTERM drains: every accepted event is delivered before the process exits.
            producer.close()

    app = base_app(
        role="ingest",
        settings=settings,
        metrics=metrics,
        checks={"kafka": lambda: "producer" in state and state["producer"].ready()},
        lifespan=lifespan,
        description="Validates events and produces them to Kafka.",
    )
    app.include_router(ingest_router)
    return app
