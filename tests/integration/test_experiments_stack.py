"""An online experiment in the production shape: the api writes its impression records to
Kafka, the processor attributes the users' later events to them and counts both in Redis
with its batches, the archiver leaves the impressions out of the archive, and ``reco ab
report`` reads the counters from Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from reco.cli import main as reco
from reco.local.stack import Stack, post_events
from tests.conftest import wait_until
from tests.integration.conftest import PARTITIONS, drained, shop_events, stack_of

pytestmark = pytest.mark.integration

EXPERIMENT = {
    "name": "stack-ab",
    "attribution_window_s": 600,
    "variants": [{"name": "control"}, {"name": "more-recent", "settings": {"history_decay": 0.5}}],
}
USERS = 40


@pytest.fixture
def ab_env(stack_env: dict[str, str]) -> dict[str, str]:
    return {**stack_env, "RECO_EXPERIMENTS": json.dumps([EXPERIMENT])}


@pytest.fixture
def ab_stack(ab_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    with stack_of(ab_env, tmp_path) as s:
        yield s


def _variants(api: str) -> dict[str, dict[str, Any]]:
    (experiment,) = httpx.get(api + "/experiments", timeout=10).json()["experiments"]
    return {v["name"]: v for v in experiment["variants"]}


def test_impressions_and_attributed_events_are_counted_once(
    ab_stack: Stack,
    ab_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = ab_stack
    stack.start()
    api, ingest = stack["api"].url, stack["ingest"].url
    shop = shop_events(100, seed=3)
    httpx.put(api + "/items", json=shop.items, timeout=30).raise_for_status()
    assert post_events(ingest, shop.events) == len(shop.events)
    users = sorted({e["user_id"] for e in shop.events})[:USERS]
    drained(stack, len(shop.events))

    served: dict[str, int] = {"control": 0, "more-recent": 0}
    pages = []
    for user in users:
        body = httpx.get(api + "/recommendations", params={"user_id": user, "count": 5}).json()
        served[body["variant"]] += 1
        pages.append((user, body))
    assert min(served.values()) > 0, served
    # The impressions reach the processor through Kafka before the users act on them.
    wait_until(
        lambda: {v: c["impressions"] for v, c in _variants(api).items()} == served,
        timeout_s=60,
        every_s=0.2,
    )

    clicks: dict[str, int] = {"control": 0, "more-recent": 0}
    follow = []
    for n, (user, body) in enumerate(pages):
        if not body["items"]:
            continue
        click = {"user_id": user, "item_id": body["items"][0]["item_id"], "type": "click"}
        if n % 2:
            click["recommendation_id"] = body["recommendation_id"]
        follow += [click, dict(click)]  # the second counts nowhere: once per page and item
        clicks[body["variant"]] += 1
    assert post_events(ingest, follow) == len(follow)
    wait_until(
        lambda: {v: c["events"]["click"]["count"] for v, c in _variants(api).items()} == clicks,
        timeout_s=60,
        every_s=0.2,
    )

    # reco ab report, as an operator runs it next to the api: the counters in Redis.
    for name in ("RECO_REDIS_URL", "RECO_REDIS_PREFIX", "RECO_EXPERIMENTS"):
        monkeypatch.setenv(name, ab_env[name])
    assert reco(["ab", "report", "--json"]) == 0
    (experiment,) = json.loads(capsys.readouterr().out)["experiments"]
    assert {v["name"]: v["impressions"] for v in experiment["variants"]} == served
    counted = stack["processor"].metric(
        "experiment_events_total", experiment="stack-ab", variant="control", kind="impressions"
    )
    assert counted == served["control"]

    # The archive keeps what users did; the impressions are the processor's alone.
    drained(stack, 0)
    wait_until(lambda: stack["archiver"].caught_up(PARTITIONS), timeout_s=60, every_s=0.5)
    with psycopg.connect(ab_env["RECO_DATABASE_URL"]) as conn:
        kinds = dict(conn.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())
    assert "impression" not in kinds
    assert kinds["click"] == len(follow) + sum(e["type"] == "click" for e in shop.events)


def test_a_processor_killed_mid_stream_counts_every_impression_and_click_once(
    ab_stack: Stack, ab_env: dict[str, str]
) -> None:
    """The counters ride in the batch's atomic write with its offsets: SIGKILLed while
    impressions and clicks stream in, the restarted processor neither loses nor repeats
    one (the clicks without an id also need their impression kept in the profile)."""
    stack = ab_stack
    stack.start("ingest", "processor", "api")
    api, ingest = stack["api"].url, stack["ingest"].url
    shop = shop_events(300, seed=5)
    httpx.put(api + "/items", json=shop.items, timeout=30).raise_for_status()
    assert post_events(ingest, shop.events) == len(shop.events)
    drained(stack, len(shop.events))
    users = sorted({e["user_id"] for e in shop.events})

    served: dict[str, int] = {"control": 0, "more-recent": 0}
    clicks: dict[str, int] = {"control": 0, "more-recent": 0}
    follow = []
    last_round = 2 * len(users)
    with httpx.Client(base_url=api, timeout=10) as http:
        for n, user in enumerate(users * 3):
            body = http.get("/recommendations", params={"user_id": user, "count": 5}).json()
            served[body["variant"]] += 1
            # Each user acts on their last page once: by its id, or by item and time (the
            # last page showing the item is this one, so either way it counts here).
            if body["items"] and n >= last_round:
                click = {"user_id": user, "item_id": body["items"][-1]["item_id"], "type": "cart"}
                if n % 2:
                    click["recommendation_id"] = body["recommendation_id"]
                follow.append(click)
                clicks[body["variant"]] += 1
            if n == len(users):
                stack["processor"].kill()  # impressions keep coming into the topic
                stack["processor"].start()
    wait_until(
        lambda: {v: c["impressions"] for v, c in _variants(api).items()} == served,
        timeout_s=90,
        every_s=0.5,
    )
    sender = threading.Thread(target=post_events, args=(ingest, follow), kwargs={"batch": 50})
    sender.start()
    wait_until(
        lambda: stack["processor"].metric("experiment_events_total", kind="cart") > 0,
        timeout_s=60,
        every_s=0.05,
    )
    stack["processor"].kill()
    stack["processor"].start()
    sender.join()
    drained(stack, 0)
    variants = _variants(api)
    assert {v: c["impressions"] for v, c in variants.items()} == served
    assert {v: c["events"]["cart"]["count"] for v, c in variants.items()} == clicks
