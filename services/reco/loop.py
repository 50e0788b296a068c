"""Runs a batch consumer (the processor, the archiver) on a thread until asked to stop,
finishing the batch at hand; backs off while a backend is unavailable; tells a watchdog
when it last made progress."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from reco.exceptions import BackendTimeout, BackendUnavailable
from reco.metrics import ConsumerMetrics

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0


class Batch(Protocol):
    @property
    def records(self) -> int: ...


class BatchStep(Protocol):
    def resume(self) -> None:
        """(Re)position the consumer where the step's sink says its work ends."""

    def run_once(self, max_records: int, timeout_s: float) -> Batch: ...


class BatchLoop:
    def __init__(
        self,
        step: BatchStep,
        *,
        batch_size: int,
        poll_timeout_s: float = 0.2,
        name: str = "reco-batch-loop",
        group: str = "",
        metrics: ConsumerMetrics | None = None,
        watchdog_s: float = float("inf"),
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        """``on_fatal`` is called from the loop's thread when it dies of an unexpected
        error; a service uses it to stop the process so that its supervisor restarts it.
        ``watchdog_s``: how long the loop may go without progress before ``stalled``."""
        self._step = step
        self._on_fatal = on_fatal
        self._batch = batch_size
        self._timeout = poll_timeout_s
        self._name = name
        self._group = group
        self._metrics = metrics
        self._watchdog_s = watchdog_s
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._last_progress = time.monotonic()
        self.error: BaseException | None = None

    def start(self) -> None:
        self._step.resume()
        self._progressed()
        self._thread.start()

    def wait_caught_up(self, timeout_s: float | None = None) -> bool:
        """True once a poll found nothing new: every event logged before is applied."""
        return self._caught_up.wait(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def seconds_since_progress(self) -> float:
        return time.monotonic() - self._last_progress

    def stalled(self) -> bool:
        """The loop has not completed a batch, nor found the log drained, for longer than
        the watchdog allows: it is stuck in a call, or every batch fails. An idle loop is
        not stalled (each empty poll is progress), so this only fires while there is work."""
        return self.seconds_since_progress() > self._watchdog_s

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _progressed(self) -> None:
        self._last_progress = time.monotonic()
        if self._metrics is not None:
            self._metrics.consumer_last_progress.labels(self._group).set(time.time())

    def _run(self) -> None:
        backoff = 0.1
        needs_resume = False
        while not self._stop.is_set():
            try:
                if needs_resume:
                    self._step.resume()
                    needs_resume = False
                result = self._step.run_once(self._batch, self._timeout)
            except BackendUnavailable as exc:
                self._paused(exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                # Re-read where the sink is before the next batch: a write may have landed
                # without its reply.
                needs_resume = True
                continue
            except BaseException as exc:
                log.exception("%s stopped", self._name)
                self.error = exc
                if self._on_fatal is not None:
                    self._on_fatal(exc)
                raise
            backoff = 0.1
            self._progressed()
            if result.records == 0:
                self._caught_up.set()

    def _paused(self, exc: BackendUnavailable, backoff_s: float) -> None:
        if isinstance(exc, BackendTimeout) and self._metrics is not None:
            self._metrics.backend_timeouts.labels(exc.backend, exc.operation).inc()
        notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
        log.warning("%s paused %.1f s: %s%s", self._name, backoff_s, exc, notes)
