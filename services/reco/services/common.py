"""What the services share: the topic, the consumer of a group, the batch-loop lifecycle."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI

from reco.adapters.factory import open_feature_store
from reco.adapters.kafka_consumer import KafkaConsumer
from reco.adapters.kafka_topics import ensure_topic
from reco.loop import BatchLoop, BatchStep
from reco.metrics import BackendMetrics, ConsumerMetrics
from reco.ports import FeatureStore
from reco.settings import ConsumerSettings, StackSettings

log = logging.getLogger(__name__)


def stop_process(exc: BaseException) -> None:
    """Ask uvicorn to shut down (SIGTERM to ourselves): a service whose consumer loop died
    must not linger as a healthy-looking process; its supervisor restarts it."""
    log.critical("stopping the service: %s", exc)
    os.kill(os.getpid(), signal.SIGTERM)


def ensure_event_topic(settings: StackSettings) -> int:
    """Create the event topic unless it exists; return how many partitions it has."""
    return ensure_topic(
        settings.kafka_bootstrap,
        settings.topic,
        settings.topic_partitions,
        settings.topic_replication,
        client_config=settings.kafka_client_config(),
        timeout_s=settings.kafka_timeout_s,
    )


def open_store(settings: StackSettings) -> FeatureStore:
    """The feature store of ``settings``, every call bounded by its timeouts."""
    return open_feature_store(
        settings.redis_url.get_secret_value(),
        settings,
        prefix=settings.redis_prefix,
        timeout_s=settings.redis_timeout_s,
        rescale_timeout_s=settings.redis_rescale_timeout_s,
    )


def open_consumer(settings: ConsumerSettings, group: str, metrics: BackendMetrics) -> KafkaConsumer:
    return KafkaConsumer(
        settings.kafka_bootstrap,
        settings.topic,
        group,
        config={
            **settings.kafka_client_config(),
            "session.timeout.ms": settings.session_timeout_ms,
        },
        timeout_s=settings.kafka_timeout_s,
        on_timeout=lambda backend, op: metrics.backend_timeouts.labels(backend, op).inc(),
    )


def batch_loop_lifespan(
    parts: dict[str, Any],
    build: Callable[[], BatchStep],
    *,
    name: str,
    group: str,
    metrics: ConsumerMetrics,
    watchdog_s: float,
    batch_size: int,
    poll_timeout_s: float,
    closing: Iterable[str],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that runs ``build()``'s step on a ``BatchLoop`` and, at shutdown, lets it
    finish its batch before closing ``parts[name]`` for each of ``closing``. ``build``
    opens the backends into ``parts`` so that readiness checks can reach them."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = parts["loop"] = BatchLoop(
            build(),
            batch_size=batch_size,
            poll_timeout_s=poll_timeout_s,
            name=name,
            group=group,
            metrics=metrics,
            watchdog_s=watchdog_s,
            on_fatal=stop_process,
        )
        loop.start()
        try:
            yield
        finally:
            loop.stop()
            for part in closing:
                with suppress(Exception):
                    parts[part].close()

    return lifespan


def loop_is_moving(parts: dict[str, Any]) -> bool:
    """The liveness check of a consumer role: its loop runs and is not stalled."""
    loop = parts.get("loop")
    return loop is None or (loop.alive and not loop.stalled())
