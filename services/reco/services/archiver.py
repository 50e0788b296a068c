"""``reco archiver``: its own consumer group copying the event log into PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from reco.adapters.factory import open_archive
from reco.archiver import Archiver
from reco.metrics import Metrics
from reco.services.common import batch_loop_lifespan, ensure_event_topic, open_consumer
from reco.settings import ArchiverSettings
from reco.web.app import base_app


def create_app(settings: ArchiverSettings) -> FastAPI:
    metrics = Metrics()
    parts: dict[str, Any] = {}

    def build() -> Archiver:
        ensure_event_topic(settings)
        parts["archive"] = open_archive(settings.database_url.get_secret_value())
        parts["consumer"] = open_consumer(settings, settings.group)
        return Archiver(parts["consumer"], parts["archive"], metrics, group=settings.group)

    return base_app(
        role="archiver",
        settings=settings,
        metrics=metrics,
        checks={
            "loop": lambda: "loop" in parts and parts["loop"].alive,
            "postgres": lambda: "archive" in parts and parts["archive"].ready(),
        },
        lifespan=batch_loop_lifespan(
            parts,
            build,
            name="reco-archiver",
            batch_size=settings.batch_size,
            poll_timeout_s=settings.poll_timeout_s,
            closing=("consumer", "archive"),
        ),
        description="Archives every event to PostgreSQL for training and rebuilds.",
    )
