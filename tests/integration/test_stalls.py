"""A backend that stops answering without closing its sockets (a frozen process, a network
partition that drops nothing): the processor waits with bounded calls, says so on its
probes, and afterwards has lost nothing and counted nothing twice.

The servers are frozen with SIGSTOP and thawed with SIGCONT: the kernel keeps accepting
their connections and data, so a client sees exactly a server that does not reply."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from reco.local.servers import KafkaServer, RedisServer
from reco.local.stack import Stack, post_events
from tests.conftest import wait_until
from tests.integration.conftest import assert_matches_reference, drained, shop_events

pytestmark = pytest.mark.integration

PROGRESS = "consumer_last_progress_timestamp_seconds"


def _live(stack: Stack) -> int:
    return httpx.get(stack["processor"].url + "/health/live", timeout=10).status_code


def _configure(stack: Stack, **env: str) -> None:
    for service in stack.services.values():
        service.env.update(env)


def test_broker_frozen_mid_commit_never_blocks_the_processor(
    stack: Stack, stack_env: dict[str, str], kafka_server: KafkaServer
) -> None:
    """A backlog makes the processor apply and commit batch after batch; the broker is
    frozen in the middle of that. The processor goes on with what it had fetched, its
    commits wait for the broker without holding the loop (a synchronous commit has no
    timeout: it held the loop, silently, for as long as the broker did not answer), its
    probes answer, the watchdog sees a loop that goes round. After the thaw it drains the
    rest, and the features equal an uninterrupted run's."""
    _configure(stack, RECO_WATCHDOG_S="5")
    stack.start("ingest")
    shop = shop_events(1500, seed=21)
    assert post_events(stack["ingest"].url, shop.events) == len(shop.events)
    processor = stack["processor"].start()
    wait_until(lambda: processor.metric("events_processed_total") > 0, timeout_s=60, every_s=0.02)

    kafka_server.pause()
    frozen_at = time.time()
    try:
        # Twice the watchdog: a loop held by a call would turn /health/live to 503 by now.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert _live(stack) == 200, processor.tail()
            time.sleep(0.5)
        assert processor.metric(PROGRESS) > frozen_at + 5, "the loop went round while frozen"
    finally:
        kafka_server.resume()

    drained(stack, len(shop.events))
    assert_matches_reference(stack_env, len(shop.events))
    assert processor.starts == 1
    assert processor.proc is not None
    assert processor.proc.poll() is None, "never restarted"


def test_redis_frozen_with_work_pending_turns_liveness_off_until_it_answers(
    stack: Stack, stack_env: dict[str, str], redis_server: RedisServer
) -> None:
    """Every batch needs Redis; frozen, each call times out after RECO_REDIS_TIMEOUT_S, is
    counted and retried. With events waiting and none applied for RECO_WATCHDOG_S, the
    processor reports itself not live (Kubernetes would restart it); thawed, it is live
    again without a restart and the features are exact."""
    _configure(stack, RECO_WATCHDOG_S="4", RECO_REDIS_TIMEOUT_S="0.5")
    stack.start("ingest", "processor")
    processor = stack["processor"]
    shop = shop_events(1500, seed=23)
    half = len(shop.events) // 2
    assert post_events(stack["ingest"].url, shop.events[:half]) == half
    drained(stack, half)

    redis_server.pause()
    sender = threading.Thread(
        target=post_events, args=(stack["ingest"].url, shop.events[half:])
    )  # ingest needs only Kafka: these are accepted, and wait for the processor
    try:
        sender.start()
        wait_until(lambda: _live(stack) == 503, timeout_s=60, every_s=0.5)
        ready = httpx.get(processor.url + "/health/ready", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] is False
        assert processor.metric("backend_timeouts_total", backend="redis") >= 1
    finally:
        redis_server.resume()
    sender.join(120)

    wait_until(lambda: _live(stack) == 200, timeout_s=60, every_s=0.5)
    drained(stack, len(shop.events))
    assert_matches_reference(stack_env, len(shop.events))
    assert processor.starts == 1
