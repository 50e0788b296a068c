"""The trained model the api serves, swapped for a newer version without a restart.

``refresh`` asks the model store for the latest version and, when it is newer than the one
in hand, loads it and swaps one reference: a request in flight keeps the model it started
with, the next one sees the new model. A version that fails to load is logged and skipped
(the api keeps the last good model and skips that version until a newer one is published).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from reco.embeddings import EMBEDDINGS, EmbeddingModel
from reco.exceptions import BackendUnavailable
from reco.metrics import ApiMetrics
from reco.ports import ModelStore

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, store: ModelStore | None, metrics: ApiMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self.current: EmbeddingModel | None = None
        self._bad: set[int] = set()

    @property
    def version(self) -> int:
        return self.current.version if self.current is not None else 0

    def refresh(self) -> bool:
        """Load the latest version if it is newer; True when a new model was swapped in."""
        if self._store is None:
            return False
        try:
            latest = self._store.latest(EMBEDDINGS)
            if latest is None or latest.version <= self.version or latest.version in self._bad:
                return False
            started = time.perf_counter()
            artifact = self._store.artifact(latest.version)
        except (BackendUnavailable, KeyError) as exc:
            # The database is away, or the version was pruned between the two reads: the
            # next refresh tries again.
            log.warning("model %s not read, keeping version %d: %s", EMBEDDINGS, self.version, exc)
            return False
        try:
            model = EmbeddingModel.from_bytes(artifact, latest.version)
        except (ValueError, OSError, KeyError) as exc:
            # A broken artifact stays broken: skip this version until a newer one comes.
            self._bad.add(latest.version)
            log.error(
                "model %s version %d unreadable, keeping version %d: %s",
                EMBEDDINGS, latest.version, self.version, exc,
            )  # fmt: skip
            self._metrics.model_load_failures.inc()
            return False
        self.current = model
        self._metrics.model_version.set(model.version)
        self._metrics.model_items.set(len(model))
        log.info(
            "model %s version %d loaded: %d items x %d in %.2f s",
            EMBEDDINGS, model.version, len(model), model.dim, time.perf_counter() - started,
        )  # fmt: skip
        return True

    async def watch(self, every_s: float) -> None:
        """Refresh every ``every_s`` seconds until cancelled (the app's lifespan task)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                # An unforeseen failure must not end the watch: the replica would serve
                # its current model for good and nobody would notice.
                log.exception("model %s refresh failed; trying again in %g s", EMBEDDINGS, every_s)


@asynccontextmanager
async def serve_models(holder: ModelHolder, every_s: float) -> AsyncIterator[None]:
    """Load the latest model before serving (a replica that starts after training serves
    it from its first request), then keep refreshing in the background; ``every_s`` 0
    loads once."""
    await asyncio.to_thread(holder.refresh)
    task = asyncio.create_task(holder.watch(every_s)) if every_s > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
