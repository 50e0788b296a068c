"""The consumer loop: retries what a backend could not do, counts timeouts, and tells the
watchdog (and through it /health/live) when it stops making progress."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from reco.exceptions import BackendTimeout, BackendUnavailable
from reco.loop import BatchLoop
from reco.metrics import ConsumerMetrics
from reco.web.probes import probes_router
from tests.conftest import wait_until

pytestmark = pytest.mark.unit


@dataclass
class Done:
    records: int


class ScriptedStep:
    """A batch step whose behaviour each test sets: how many records a batch has, whether
    it raises, whether it blocks (a call that never returns) until released."""

    def __init__(self) -> None:
        self.records = 0
        self.fail: BaseException | None = None
        self.fail_resume: BaseException | None = None
        self.block = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.batches = 0
        self.resumes = 0

    def resume(self) -> None:
        self.resumes += 1
        if self.fail_resume is not None:
            error, self.fail_resume = self.fail_resume, None
            raise error

    def run_once(self, max_records: int, timeout_s: float) -> Done:
        if not self.release.is_set():
            self.block.set()
            self.release.wait()
        if self.fail is not None:
            raise self.fail
        self.batches += 1
        return Done(self.records)


def _loop(step: ScriptedStep, metrics: ConsumerMetrics, watchdog_s: float) -> BatchLoop:
    return BatchLoop(
        step,
        batch_size=10,
        poll_timeout_s=0.01,
        name="test-loop",
        group="g",
        metrics=metrics,
        watchdog_s=watchdog_s,
    )


def _timeouts(metrics: ConsumerMetrics, backend: str, operation: str) -> float:
    value: float = metrics.backend_timeouts.labels(backend, operation)._value.get()
    return value


def test_a_call_that_never_returns_stalls_the_loop_and_fails_liveness() -> None:
    step, metrics = ScriptedStep(), ConsumerMetrics()
    loop = _loop(step, metrics, watchdog_s=0.3)
    app = FastAPI()
    app.include_router(
        probes_router({}, metrics.registry, {"loop": lambda: loop.alive and not loop.stalled()})
    )
    client = TestClient(app)
    step.records = 5  # there is work: every batch applies records
    loop.start()
    try:
        wait_until(lambda: step.batches > 3)
        assert client.get("/health/live").status_code == 200
        assert not loop.stalled()

        step.release.clear()  # the next call hangs, as a commit without timeout did
        step.block.wait(5)
        wait_until(loop.stalled, timeout_s=5)
        live = client.get("/health/live")
        assert live.status_code == 503
        assert live.json() == {"status": "stalled", "checks": {"loop": False}}

        step.release.set()  # the call returns: progress again, alive again
        wait_until(lambda: not loop.stalled(), timeout_s=5)
        assert client.get("/health/live").status_code == 200
    finally:
        step.release.set()
        loop.stop()


def test_an_idle_loop_is_not_stalled() -> None:
    step, metrics = ScriptedStep(), ConsumerMetrics()
    loop = _loop(step, metrics, watchdog_s=0.2)
    loop.start()  # every poll finds nothing: no work, never stalled
    try:
        wait_until(lambda: step.batches > 0)
        threading.Event().wait(0.5)
        assert not loop.stalled()
        assert loop.wait_caught_up(0)
    finally:
        loop.stop()


def test_a_loop_whose_every_batch_fails_is_stalled_and_each_timeout_is_counted() -> None:
    step, metrics = ScriptedStep(), ConsumerMetrics()
    step.fail = BackendTimeout("redis", "apply", "feature store: apply: Timeout reading")
    loop = _loop(step, metrics, watchdog_s=0.5)
    loop.start()
    try:
        wait_until(lambda: _timeouts(metrics, "redis", "apply") >= 3, timeout_s=5)
        wait_until(loop.stalled, timeout_s=5)
        assert loop.alive, "a backend timeout is retried, never fatal"
        assert step.resumes >= 3, "each retry starts where the sink says"

        step.fail = None
        wait_until(lambda: not loop.stalled(), timeout_s=10)
    finally:
        loop.stop()


def test_a_backend_failing_again_while_resuming_does_not_end_the_loop() -> None:
    """The retry re-reads the sink's offsets, which needs the same backend: its failure
    must be one more retry, not an exception that ends the thread."""
    step, metrics = ScriptedStep(), ConsumerMetrics()
    step.fail = BackendUnavailable("redis down")
    loop = _loop(step, metrics, watchdog_s=60)
    loop.start()
    try:
        wait_until(lambda: step.resumes >= 2)
        step.fail_resume = BackendTimeout("redis", "applied_offsets", "timeout")
        wait_until(lambda: _timeouts(metrics, "redis", "applied_offsets") == 1, timeout_s=5)
        step.fail = None
        step.records = 1
        batches = step.batches
        wait_until(lambda: step.batches > batches + 2, timeout_s=5)
        assert loop.alive
    finally:
        loop.stop()


def test_progress_is_exported_as_a_timestamp() -> None:
    step, metrics = ScriptedStep(), ConsumerMetrics()
    loop = _loop(step, metrics, watchdog_s=60)
    loop.start()
    try:
        wait_until(lambda: metrics.consumer_last_progress.labels("g")._value.get() > 1e9)
    finally:
        loop.stop()
