"""``reco archiver``: its own consumer group copying the event log into PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI

from reco.adapters.factory import open_archive
from reco.adapters.kafka_log import KafkaConsumer, ensure_topic
from reco.archiver import Archiver
from reco.loop import BatchLoop
from reco.metrics import Metrics
from reco.services.common import stop_process
from reco.settings import ArchiverSettings
from reco.web.app import base_app


def create_app(settings: ArchiverSettings) -> FastAPI:
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
        archive = parts["archive"] = open_archive(settings.database_url.get_secret_value())
        consumer = parts["consumer"] = KafkaConsumer(
            settings.kafka_bootstrap,
            settings.topic,
            settings.group,
            config={"session.timeout.ms": settings.session_timeout_ms},
        )
        loop = parts["loop"] = BatchLoop(
            Archiver(consumer, archive, metrics, group=settings.group),
            batch_size=settings.batch_size,
            poll_timeout_s=settings.poll_timeout_s,
            name="reco-archiver",
            on_fatal=stop_process,
        )
        loop.start()
        try:
            yield
        finally:
            loop.stop()
            for name in ("consumer", "archive"):
                with suppress(Exception):
                    parts[name].close()

    return base_app(
        role="archiver",
        settings=settings,
        metrics=metrics,
        checks={
            "loop": lambda: "loop" in parts and parts["loop"].alive,
            "postgres": lambda: "archive" in parts and parts["archive"].ready(),
        },
        lifespan=lifespan,
        description="Archives every event to PostgreSQL for training and rebuilds.",
    )
