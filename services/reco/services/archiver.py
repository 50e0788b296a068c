"""``reco archiver``: its own consumer group copying the event log into PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from reco.adapters.factory import open_archive
from reco.archiver import Archiver
from reco.metrics import ArchiverMetrics
from reco.services.common import (
    batch_loop_lifespan,
    ensure_event_topic,
    loop_is_moving,
    open_consumer,
)
from reco.settings import ArchiverSettings
from reco.web.app import base_app


def create_app(settings: ArchiverSettings) -> FastAPI:
    metrics = ArchiverMetrics()
    parts: dict[str, Any] = {}

    def build() -> Archiver:
        ensure_event_topic(settings)
        parts["archive"] = open_archive(
            settings.database_url.get_secret_value(), timeout_s=settings.postgres_timeout_s
        )
        parts["consumer"] = open_consumer(settings, settings.group, metrics)
        return Archiver(parts["consumer"], parts["archive"], metrics, group=settings.group)

    return base_app(
        role="archiver",
        settings=settings,
        metrics=metrics,
        checks={
            "loop": lambda: "loop" in parts and parts["loop"].alive,
            "postgres": lambda: "archive" in parts and parts["archive"].ready(),
        },
        live_checks={"loop": lambda: loop_is_moving(parts)},
        lifespan=batch_loop_lifespan(
            parts,
            build,
            name="reco-archiver",
            group=settings.group,
            metrics=metrics,
            watchdog_s=settings.watchdog_s,
            batch_size=settings.batch_size,
            poll_timeout_s=settings.poll_timeout_s,
            closing=("consumer", "archive"),
        ),
        description="Archives every event to PostgreSQL for training and rebuilds.",
    )
