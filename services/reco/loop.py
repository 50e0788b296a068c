"""Runs a batch consumer (the processor, the archiver) on a thread until asked to stop,
finishing the batch at hand; backs off while a backend is unavailable."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from reco.exceptions import BackendUnavailable

log = logging.getLogger(__name__)


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
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        """``on_fatal`` is called from the loop's thread when it dies of an unexpected
        error; a service uses it to stop the process so that its supervisor restarts it."""
        self._processor = step
        self._on_fatal = on_fatal
        self._batch = batch_size
        self._timeout = poll_timeout_s
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._processor.resume()
        self._thread.start()

    def wait_caught_up(self, timeout_s: float | None = None) -> bool:
        """True once a poll found nothing new: every event logged before is applied."""
        return self._caught_up.wait(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                result = self._processor.run_once(self._batch, self._timeout)
            except BackendUnavailable as exc:
                log.warning("%s paused %.1f s: %s", self._thread.name, backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                self._processor.resume()
                continue
            except BaseException as exc:
                log.exception("%s stopped", self._thread.name)
                self.error = exc
                if self._on_fatal is not None:
                    self._on_fatal(exc)
                raise
            backoff = 0.1
            if result.records == 0:
                self._caught_up.set()
