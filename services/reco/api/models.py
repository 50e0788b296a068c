"""What the api serves from the model store, swapped for a newer version without a restart.

Three kinds are published there: the item vectors ``reco train`` learns (``ModelHolder``),
the ranker ``reco train --ranker`` learns (``RankerHolder``) and the request-time settings
``reco tune`` chooses (``TunedSettingsHolder``). ``refresh`` asks
the store for the latest version of its kind and, when it is newer than the one in hand,
loads it and swaps one reference: a request in flight keeps what it started with, the next
one sees the new version. A version that fails to load is logged and skipped (the api keeps
the last good one and skips that version until a newer one is published).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError

from reco.embeddings import EMBEDDINGS, EmbeddingModel
from reco.exceptions import BackendUnavailable
from reco.metrics import ApiMetrics
from reco.ports import ModelStore
from reco.ranking import RANKER
from reco.ranking.model import RankerModel
from reco.settings import TUNED_SETTINGS, EngineSettings, TunedSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


class Published(Generic[T]):
    """The newest loadable version of one kind of artifact in the model store."""

    kind: str

    def __init__(self, store: ModelStore | None, metrics: ApiMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self.current: T | None = None
        self._version = 0
        self._bad: set[int] = set()

    @property
    def version(self) -> int:
        """The version in hand; 0: none."""
        return self._version

    def _load(self, artifact: bytes, version: int) -> T:
        """The artifact as served; raises ``ValueError`` (or ``OSError``, ``KeyError``) when
        it cannot be read."""
        raise NotImplementedError

    def _swapped(self, value: T, version: int, seconds: float) -> None:
        """Export and log what was swapped in."""

    def _failed(self) -> None:
        """Count a version that could not be loaded."""

    def refresh(self) -> bool:
        """Load the latest version if it is newer; True when a new one was swapped in."""
        if self._store is None:
            return False
        try:
            latest = self._store.latest(self.kind)
            if latest is None or latest.version <= self.version or latest.version in self._bad:
                return False
            started = time.perf_counter()
            artifact = self._store.artifact(latest.version)
        except (BackendUnavailable, KeyError) as exc:
            # The database is away, or the version was pruned between the two reads: the
            # next refresh tries again.
            log.warning("%s not read, keeping version %d: %s", self.kind, self.version, exc)
            return False
        try:
            value = self._load(artifact, latest.version)
        except (ValueError, OSError, KeyError) as exc:
            # A broken artifact stays broken: skip this version until a newer one comes.
            self._bad.add(latest.version)
            log.error(
                "%s version %d unreadable, keeping version %d: %s",
                self.kind, latest.version, self.version, exc,
            )  # fmt: skip
            self._failed()
            return False
        self.current, self._version = value, latest.version
        self._swapped(value, latest.version, time.perf_counter() - started)
        return True

    async def watch(self, every_s: float) -> None:
        """Refresh every ``every_s`` seconds until cancelled (the app's lifespan task)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                # An unforeseen failure must not end the watch: the replica would serve
                # its current version for good and nobody would notice.
                log.exception("%s refresh failed; trying again in %g s", self.kind, every_s)


class ModelHolder(Published[EmbeddingModel]):
    """The item vectors (``reco train``)."""

    kind = EMBEDDINGS

    @property
    def version(self) -> int:
        # The evaluation harness sets ``current`` directly; the model knows its version.
        return self.current.version if self.current is not None else 0

    def _load(self, artifact: bytes, version: int) -> EmbeddingModel:
        return EmbeddingModel.from_bytes(artifact, version)

    def _swapped(self, value: EmbeddingModel, version: int, seconds: float) -> None:
        self._metrics.model_version.set(version)
        self._metrics.model_items.set(len(value))
        log.info(
            "model %s version %d loaded: %d items x %d in %.2f s",
            self.kind, version, len(value), value.dim, seconds,
        )  # fmt: skip

    def _failed(self) -> None:
        self._metrics.model_load_failures.inc()


class TunedSettingsHolder(Published[EngineSettings]):
    """The configured settings with the newest ``reco tune`` result over them.

    ``current`` is None until a result is loaded (or when ``RECO_TUNED_SETTINGS=false``):
    the configured settings apply. An empty result (``reco tune --clear``) gives them back.
    """

    kind = TUNED_SETTINGS

    def __init__(self, store: ModelStore | None, metrics: ApiMetrics, base: EngineSettings) -> None:
        super().__init__(store if base.tuned_settings else None, metrics)
        self._base = base

    def settings(self) -> EngineSettings:
        """What a request reads its request-time settings from."""
        return self.current or self._base

    def _load(self, artifact: bytes, version: int) -> EngineSettings:
        try:
            tuned = TunedSettings.model_validate(orjson.loads(artifact))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise ValueError(f"not a tuned-settings document: {exc}") from exc
        return tuned.apply(self._base)

    def _swapped(self, value: EngineSettings, version: int, seconds: float) -> None:
        self._metrics.tuned_settings_version.set(version)
        changed = TunedSettings.between(self._base, value)
        log.info(
            "tuned settings version %d applied: %s", version, changed.describe() or "as configured"
        )

    def _failed(self) -> None:
        self._metrics.tuned_settings_load_failures.inc()


class RankerHolder(Published[RankerModel]):
    """The learned ranker (``reco train --ranker``); None: the weighted sum ranks alone.
    ``RECO_USE_RANKER=false`` never loads one."""

    kind = RANKER

    def __init__(self, store: ModelStore | None, metrics: ApiMetrics, use: bool = True) -> None:
        super().__init__(store if use else None, metrics)

    def _load(self, artifact: bytes, version: int) -> RankerModel:
        return RankerModel.from_bytes(artifact, version)

    def _swapped(self, value: RankerModel, version: int, seconds: float) -> None:
        self._metrics.ranker_version.set(version)
        log.info(
            "ranker version %d loaded in %.2f s: it reranks the first %d candidates",
            version, seconds, value.candidates,
        )  # fmt: skip

    def _failed(self) -> None:
        self._metrics.ranker_load_failures.inc()


@asynccontextmanager
async def serve_models(holders: Sequence[Published[Any]], every_s: float) -> AsyncIterator[None]:
    """Load the latest version of each before serving (a replica that starts after training
    serves it from its first request), then keep refreshing in the background; ``every_s``
    0 loads once."""
    for holder in holders:
        await asyncio.to_thread(holder.refresh)
    tasks = [asyncio.create_task(h.watch(every_s)) for h in holders] if every_s > 0 else []
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
