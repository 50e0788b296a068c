"""``reco processor``: consume Kafka in batches, write features to Redis, then commit.

It serves only probes and metrics over HTTP; SIGTERM finishes the batch in hand, commits,
and leaves the consumer group cleanly.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from reco.adapters.factory import open_catalog
from reco.metrics import ProcessorMetrics
from reco.processor import Processor
from reco.services.common import (
    batch_loop_lifespan,
    ensure_event_topic,
    loop_is_moving,
    open_consumer,
    open_store,
)
from reco.settings import ProcessorSettings
from reco.web.app import base_app


def create_app(settings: ProcessorSettings) -> FastAPI:
    metrics = ProcessorMetrics()
    parts: dict[str, Any] = {}

    def build() -> Processor:
        ensure_event_topic(settings)
        parts["store"] = open_store(settings)
        parts["catalog"] = open_catalog(
            settings.database_url.get_secret_value(), timeout_s=settings.postgres_timeout_s
        )
        parts["consumer"] = open_consumer(settings, settings.group, metrics)
        return Processor(
            parts["consumer"], parts["store"], parts["catalog"], settings, metrics,
            group=settings.group,
        )  # fmt: skip

    return base_app(
        role="processor",
        settings=settings,
        metrics=metrics,
        checks={
            "loop": lambda: "loop" in parts and parts["loop"].alive,
            "redis": lambda: "store" in parts and parts["store"].ready(),
        },
        live_checks={"loop": lambda: loop_is_moving(parts)},
        lifespan=batch_loop_lifespan(
            parts,
            build,
            name="reco-processor",
            group=settings.group,
            metrics=metrics,
            watchdog_s=settings.watchdog_s,
            batch_size=settings.batch_size,
            poll_timeout_s=settings.poll_timeout_s,
            closing=("consumer", "catalog", "store"),
        ),
        description="Consumes events from Kafka and keeps the features in Redis current.",
    )
