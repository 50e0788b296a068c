"""Embedded mode: ingest, processor and api in one process over embedded backends.

The event log (SQLite) is the source of truth; the in-memory features are rebuilt from it
at start, then kept current by the processor thread. The app is not ready until that
rebuild has caught up with the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.sqlite_catalog import SqliteCatalog
from reco.adapters.sqlite_log import SqliteConsumer, SqliteEventLog, SqliteProducer
from reco.adapters.sqlite_models import SqliteModelStore
from reco.api import Recommender, routers
from reco.api.impressions import ImpressionLog
from reco.api.models import ModelHolder, RankerHolder, TunedSettingsHolder, serve_models
from reco.ingest import IngestService
from reco.ingest import router as ingest_router
from reco.loop import BatchLoop
from reco.metrics import EmbeddedMetrics
from reco.processor import Processor
from reco.settings import EmbeddedSettings
from reco.web.app import base_app

log = logging.getLogger(__name__)

PROCESSOR_GROUP = "reco-processor"


@dataclass
class EmbeddedEngine:
    """The backends and the processor of one data directory, opened and closed together."""

    settings: EmbeddedSettings
    metrics: EmbeddedMetrics
    event_log: SqliteEventLog
    producer: SqliteProducer
    consumer: SqliteConsumer
    store: MemoryFeatureStore
    catalog: SqliteCatalog
    models: SqliteModelStore
    processor: BatchLoop
    _warmed: bool = field(default=False, init=False)

    @classmethod
    def open(
        cls, settings: EmbeddedSettings, metrics: EmbeddedMetrics | None = None
    ) -> EmbeddedEngine:
        metrics = metrics or EmbeddedMetrics()
        data = Path(settings.data_dir)
        event_log = SqliteEventLog(data / "events.db")
        consumer = event_log.consumer(PROCESSOR_GROUP)
        store = MemoryFeatureStore(
            max_related_per_item=settings.max_related_per_item,
            max_popular=settings.max_popular,
            max_sessions=settings.max_sessions,
            dedupe_window=settings.dedupe_window,
            neighbour_sessions_per_item=settings.neighbour_sessions_per_item,
        )
        catalog = SqliteCatalog(data / "catalog.db")
        processor = Processor(consumer, store, catalog, settings, metrics, group=PROCESSOR_GROUP)
        return cls(
            settings=settings,
            metrics=metrics,
            event_log=event_log,
            producer=event_log.producer(),
            consumer=consumer,
            store=store,
            catalog=catalog,
            models=SqliteModelStore(data / "models.db"),
            processor=BatchLoop(
                processor,
                batch_size=settings.processor_batch,
                name="reco-processor",
                group=PROCESSOR_GROUP,
                metrics=metrics,
                watchdog_s=settings.watchdog_s,
            ),
        )

    def start(self) -> None:
        self.processor.start()

    def close(self) -> None:
        """Finish the batch in hand, then close every backend."""
        self.processor.stop()
        self.producer.close()
        self.consumer.close()
        self.catalog.close()
        self.models.close()
        self.store.close()

    def moving(self) -> bool:
        """The processor thread runs and is not stalled (the liveness check)."""
        return self.processor.alive and not self.processor.stalled()

    def ready(self) -> bool:
        if not (self.processor.alive and self.processor.wait_caught_up(0)):
            return False
        if not self._warmed:
            # The store ranks popularity on its first read (3 ms for 2.4k items) and keeps
            # the ranking current from then on: rank it before the first request does.
            self.store.popular(1)
            self._warmed = True
        return True


def create_app(settings: EmbeddedSettings, engine: EmbeddedEngine | None = None) -> FastAPI:
    """The embedded app. Pass ``engine`` to share one opened engine (tests, benchmarks);
    otherwise the app opens one from ``settings`` at startup and closes it at shutdown."""
    metrics = engine.metrics if engine is not None else EmbeddedMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        eng = engine or EmbeddedEngine.open(settings, metrics)
        if owned:
            eng.start()
        app.state.engine = eng
        app.state.ingest = IngestService(eng.producer, settings, metrics)
        app.state.catalog = eng.catalog
        models = ModelHolder(eng.models, metrics)
        tuned = TunedSettingsHolder(eng.models, metrics, settings)
        ranker = RankerHolder(eng.models, metrics, settings.use_ranker)
        impressions = ImpressionLog(eng.producer, metrics) if settings.experiments else None
        app.state.impressions = impressions
        app.state.recommender = Recommender(
            eng.store, eng.catalog, settings, metrics, models, tuned, ranker, impressions
        )
        async with serve_models([models, tuned, ranker], settings.model_refresh_s):
            try:
                yield
            finally:
                if impressions is not None:
                    impressions.close()
                if owned:
                    eng.close()

    def engine_of() -> EmbeddedEngine:
        eng: EmbeddedEngine = app.state.engine
        return eng

    app = base_app(
        role="embedded",
        settings=settings,
        metrics=metrics,
        checks={
            "event_log": lambda: engine_of().producer.ready(),
            "catalog": lambda: engine_of().catalog.ready(),
            "features": lambda: engine_of().ready(),
        },
        live_checks={"processor": lambda: engine_of().moving()},
        lifespan=lifespan,
        description="Real-time recommendations: events in, recommendations out (embedded mode).",
    )
    app.include_router(ingest_router)
    for router in routers:
        app.include_router(router)
    return app
