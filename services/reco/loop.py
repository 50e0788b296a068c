"""Runs a ``Processor`` on a thread until asked to stop, finishing the batch at hand."""

from __future__ import annotations

import logging
import threading

from reco.exceptions import BackendUnavailable
from reco.processor.processor import Processor

log = logging.getLogger(__name__)


class ProcessorThread:
    def __init__(
        self, processor: Processor, *, batch_size: int, poll_timeout_s: float = 0.2
    ) -> None:
        self._processor = processor
        self._batch = batch_size
        self._timeout = poll_timeout_s
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reco-processor", daemon=True)
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
                log.warning("processor paused %.1f s: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                self._processor.resume()
                continue
            except BaseException as exc:
                log.exception("processor stopped")
                self.error = exc
                raise
            backoff = 0.1
            if result.records == 0:
                self._caught_up.set()
