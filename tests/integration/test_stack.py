"""The production shape across real processes: ingest -> Kafka -> processor -> Redis -> api,
and the archiver -> PostgreSQL; crashes and restarts lose nothing and count nothing twice."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from reco.local.servers import KafkaServer, RedisServer
from reco.local.stack import ServiceProcess, Stack, post_events
from reco.settings import ProcessorSettings
from tests.conftest import wait_until
from tests.integration.conftest import (
    PARTITIONS,
    assert_matches_reference,
    assert_same_features,
    drained,
    redis_snapshot,
    shop_events,
)

pytestmark = pytest.mark.integration


def test_events_in_recommendations_out(stack: Stack, stack_env: dict[str, str]) -> None:
    stack.start()
    shop = shop_events(200)
    api, ingest = stack["api"].url, stack["ingest"].url
    items = [dict(i, in_stock=True) for i in shop.items]
    items[0]["in_stock"] = False  # a sold-out item must never be recommended
    httpx.put(api + "/items", json=items, timeout=30).raise_for_status()
    assert post_events(ingest, shop.events) == len(shop.events)
    drained(stack, len(shop.events))
    # The exported lag agrees: every partition known and at zero.
    wait_until(lambda: stack["processor"].caught_up(PARTITIONS), timeout_s=30, every_s=0.5)

    anchor = "running-03-trail-shoe"
    posted = time.monotonic()
    r = httpx.post(
        ingest + "/events", json={"user_id": "newbie", "item_id": anchor, "type": "view"}
    )
    assert r.status_code == 202

    def personal() -> dict[str, Any] | None:
        body = httpx.get(api + "/recommendations", params={"user_id": "newbie"}).json()
        return body if body["personalised"] else None

    body = wait_until(personal, timeout_s=5, every_s=0.01)
    assert time.monotonic() - posted < 1.0, "visible within a second of the 202"
    similar = httpx.get(api + f"/items/{anchor}/similar", params={"count": 5}).json()
    assert body["items"][0]["item_id"] in {i["item_id"] for i in similar["items"]}
    assert any(r.startswith("viewed together with") for r in body["items"][0]["reasons"])
    assert items[0]["item_id"] not in {i["item_id"] for i in body["items"]}

    shoes = httpx.get(
        api + "/recommendations", params={"user_id": "newbie", "category": "running"}
    ).json()
    assert shoes["items"]
    assert {i["category"] for i in shoes["items"]} == {"running"}

    # The archiver, its own consumer group, has every event.
    wait_until(
        lambda: (
            stack["archiver"].caught_up(PARTITIONS)
            and stack["archiver"].metric("events_archived_total") >= len(shop.events) + 1
        ),
        timeout_s=60,
        every_s=0.5,
    )
    with psycopg.connect(stack_env["RECO_DATABASE_URL"]) as conn:
        archived = conn.execute("SELECT count(*) FROM events").fetchone()
    assert archived == (len(shop.events) + 1,)

    # `reco train` (the CronJob's command) learns from the archive and publishes a version;
    # the running api loads it without a restart, and a cold item gets a similar list.
    trained = subprocess.run(
        [sys.executable, "-m", "reco.cli", "train"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)
    assert version["metrics"]["events"] == len(shop.events) + 1
    wait_until(
        lambda: stack["api"].metric("embedding_model_version") == version["version"], timeout_s=30
    )
    cold = {"item_id": "running-new-arrival", "title": "New", "category": "running"}
    httpx.put(api + "/items", json=[cold], timeout=30).raise_for_status()
    similar = httpx.get(api + f"/items/{cold['item_id']}/similar", params={"count": 5}).json()
    assert similar["personalised"] is True, "the running centroid stands in for the cold item"
    assert {i["category"] for i in similar["items"][:3]} == {"running"}

    # SIGTERM drains every service and exits cleanly.
    for role in ("ingest", "processor", "archiver", "api"):
        assert stack[role].stop() in (0, -15), stack[role].tail()


def test_processor_killed_repeatedly_loses_nothing_counts_nothing_twice(
    stack: Stack, stack_env: dict[str, str]
) -> None:
    stack.start("ingest", "processor", "api")
    shop = shop_events(6700, seed=9)  # ~100k events
    assert len(shop.events) >= 100_000
    httpx.put(stack["api"].url + "/items", json=shop.items, timeout=60).raise_for_status()

    rng = random.Random(1)
    sent = 0
    kills = 0
    part = len(shop.events) // 5 + 1
    for start in range(0, len(shop.events), part):
        chunk = shop.events[start : start + part]
        result: list[int] = []
        sender = threading.Thread(
            target=lambda c=chunk, r=result: r.append(post_events(stack["ingest"].url, c))
        )
        sender.start()
        # Kill mid-stream: once this incarnation has applied part of the chunk.
        wait_until(
            lambda: stack["processor"].metric("events_processed_total") > 0,
            timeout_s=60,
            every_s=0.05,
        )
        time.sleep(rng.uniform(0.1, 0.8))
        stack["processor"].kill()
        kills += 1
        stack["processor"].start()
        sender.join()
        sent += result[0]
    assert sent == len(shop.events)
    assert kills >= 4
    drained(stack, len(shop.events))

    assert_matches_reference(stack_env, len(shop.events))


def test_kafka_restarted_mid_stream(
    stack: Stack, stack_env: dict[str, str], kafka_server: KafkaServer
) -> None:
    stack.start("ingest", "processor", "api")
    shop = shop_events(1500, seed=13)
    half = len(shop.events) // 2
    assert post_events(stack["ingest"].url, shop.events[:half]) == half

    kafka_server.stop()
    # While Kafka is down ingest refuses with 503 + Retry-After: nothing is silently dropped.
    r = httpx.post(
        stack["ingest"].url + "/events",
        json={"user_id": "u", "item_id": "i", "type": "view"},
        timeout=30,
    )
    assert r.status_code == 503
    assert r.headers["retry-after"]
    kafka_server.start()

    assert post_events(stack["ingest"].url, shop.events[half:]) == len(shop.events) - half
    drained(stack, len(shop.events))
    assert_matches_reference(stack_env, len(shop.events))


def test_redis_restarted_mid_stream_then_rebuild(
    stack: Stack, stack_env: dict[str, str], redis_server: RedisServer
) -> None:
    stack.start("ingest", "processor", "api")
    shop = shop_events(1500, seed=17)
    half = len(shop.events) // 2
    assert post_events(stack["ingest"].url, shop.events[:half]) == half
    drained(stack, half)

    redis_server.kill()  # no persistence: every feature is gone
    redis_server.start()
    assert post_events(stack["ingest"].url, shop.events[half:]) == len(shop.events) - half
    drained(stack, len(shop.events))
    # The processor noticed the empty store and rebuilt it from the topic by itself.
    wait_until(
        lambda: sum(redis_snapshot(stack_env)["offsets"].values()) == len(shop.events),
        timeout_s=60,
        every_s=0.5,
    )
    expected = assert_matches_reference(stack_env, len(shop.events))

    # reco rebuild recomputes the same features from the topic.
    stack["processor"].stop()
    done = subprocess.run(
        [sys.executable, "-m", "reco.cli", "rebuild", "--yes"],
        env=stack["processor"].env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"rebuilt from {len(shop.events)} records" in done.stdout
    assert_same_features(redis_snapshot(stack_env), expected, ProcessorSettings())


def test_two_processors_share_the_partitions_and_one_takes_over_a_killed_ones(
    stack: Stack, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Two processors on four partitions split them; the second is SIGKILLed mid-stream and
    the first takes its partitions over: the end state equals one uninterrupted processor's,
    whatever the two did to the decay landmark and to each other's items."""
    second = ServiceProcess("processor", stack.env, tmp_path / "logs", name="processor-2")
    stack.start("ingest", "processor", "api")
    second.start()
    try:
        shop = shop_events(2500, seed=23)
        httpx.put(stack["api"].url + "/items", json=shop.items, timeout=60).raise_for_status()

        def split() -> bool:
            held = stack.group_assignment()
            return len(held) == 2 and all(held) and set().union(*held) == set(range(PARTITIONS))

        wait_until(split, timeout_s=60, every_s=0.5)
        half = len(shop.events) // 2
        assert post_events(stack["ingest"].url, shop.events[:half]) == half
        wait_until(
            lambda: (
                stack["processor"].metric("events_processed_total") > 0
                and second.metric("events_processed_total") > 0
            ),
            timeout_s=60,
            every_s=0.2,
        )

        sent: list[int] = []
        sender = threading.Thread(
            target=lambda: sent.append(post_events(stack["ingest"].url, shop.events[half:]))
        )
        sender.start()
        time.sleep(random.Random(3).uniform(0.1, 0.5))
        second.kill()  # mid-stream: no commit, no leaving the group
        sender.join()
        assert sent == [len(shop.events) - half]
        drained(stack, len(shop.events))
        assert stack.group_assignment() == [set(range(PARTITIONS))], "the survivor holds all"
        assert_matches_reference(stack_env, len(shop.events))
    except BaseException:
        print(second.tail(80))
        raise
    finally:
        second.stop()


def test_two_processors_catching_up_together_report_the_lag_drained(
    stack: Stack, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Two processors start on a backlog at once, so the group rebalances while commits are
    in flight: once every event is applied, the lag both report (what an autoscaler reads)
    is 0 for every partition. A commit a rebalance interrupted used to be dropped even for
    partitions the member kept, leaving their lag at the backlog's size for good."""
    stack.start("ingest", "api")
    shop = shop_events(2500, seed=29)
    httpx.put(stack["api"].url + "/items", json=shop.items, timeout=60).raise_for_status()
    assert post_events(stack["ingest"].url, shop.events) == len(shop.events)
    second = ServiceProcess("processor", stack.env, tmp_path / "logs", name="processor-2")
    processors = [stack["processor"], second]
    for processor in processors:
        processor.start(wait=False)
    try:
        for processor in processors:
            processor.wait_ready()
        drained(stack, len(shop.events))

        def lag_drained() -> bool:
            lags = {labels: value for p in processors for labels, value in lag_samples(p).items()}
            return len(lags) == PARTITIONS and not any(lags.values())

        wait_until(lag_drained, timeout_s=30, every_s=0.5)
    except BaseException:
        print(second.tail(80))
        raise
    finally:
        second.stop()


def lag_samples(process: ServiceProcess) -> dict[str, float]:
    """``consumer_lag_records`` of ``process`` by partition."""
    out = {}
    for partition in range(PARTITIONS):
        values = process.samples("consumer_lag_records", partition=str(partition))
        if values:
            out[str(partition)] = values[0]
    return out
