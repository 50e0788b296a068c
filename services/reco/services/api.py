"""``reco api``: recommendations from the features in Redis and the catalog in PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI

from reco.adapters.factory import open_catalog, open_model_store
from reco.adapters.kafka_producer import KafkaProducer
from reco.api import Recommender, routers
from reco.api.impressions import ImpressionLog
from reco.api.models import ModelHolder, RankerHolder, TunedSettingsHolder, serve_models
from reco.metrics import ApiMetrics
from reco.services.common import open_store
from reco.settings import ApiSettings
from reco.web.app import base_app


def create_app(settings: ApiSettings) -> FastAPI:
    metrics = ApiMetrics()
    parts: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = settings.database_url.get_secret_value()
        store = parts["store"] = open_store(settings)
        catalog = parts["catalog"] = open_catalog(database, timeout_s=settings.postgres_timeout_s)
        models = ModelHolder(
            parts.setdefault(
                "models", open_model_store(database, timeout_s=settings.postgres_timeout_s)
            ),
            metrics,
        )
        app.state.catalog = catalog
        tuned = TunedSettingsHolder(parts["models"], metrics, settings)
        ranker = RankerHolder(parts["models"], metrics, settings.use_ranker)
        impressions = None
        if settings.experiments:
            # Impression records go to the events' topic, keyed by user like the events,
            # so that one processor sees a user's impressions and events in order.
            producer = parts["producer"] = KafkaProducer(
                settings.kafka_bootstrap,
                settings.topic,
                config={**settings.kafka_client_config(), "client.id": "reco-api"},
            )
            impressions = parts["impressions"] = ImpressionLog(producer, metrics)
        app.state.impressions = impressions
        app.state.recommender = Recommender(
            store, catalog, settings, metrics, models, tuned, ranker, impressions
        )
        try:
            async with serve_models([models, tuned, ranker], settings.model_refresh_s):
                yield
        finally:
            # The impressions queued are written before the producer closes.
            for name in ("impressions", "producer", "models", "catalog", "store"):
                if name in parts:
                    with suppress(Exception):
                        parts[name].close()

    app = base_app(
        role="api",
        settings=settings,
        metrics=metrics,
        checks={
            "redis": lambda: "store" in parts and parts["store"].ready(),
            "postgres": lambda: "catalog" in parts and parts["catalog"].ready(),
        },
        lifespan=lifespan,
        description="Serves recommendations, popular and similar items, and the catalog.",
    )
    for router in routers:
        app.include_router(router)
    return app
