"""The HTTP contract of the embedded app: events in, recommendations out, within a second."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import caught_up, wait_until

pytestmark = pytest.mark.api

CATALOG = [
    {"item_id": "x", "title": "Trail Shoe", "category": "shoes", "price": 120.0},
    {"item_id": "laces", "title": "Laces", "category": "accessories", "price": 5.0},
    {"item_id": "socks", "title": "Socks", "category": "accessories", "price": 12.0},
    {"item_id": "insole", "title": "Insole", "category": "accessories", "price": 25.0},
    {"item_id": "tent", "title": "Tent", "category": "camping", "price": 300.0},
    {"item_id": "stove", "title": "Stove", "category": "camping", "price": 80.0},
    {"item_id": "soldout", "title": "Sold out", "category": "camping", "in_stock": False},
]


def _browse(client: TestClient) -> None:
    """Twenty shoppers: half look at x then its accessories, half at camping gear."""
    client.put("/items", json=CATALOG).raise_for_status()
    events = []
    for n in range(20):
        items = ["x", "laces", "socks", "insole"] if n % 2 else ["tent", "stove", "soldout"]
        events += [{"user_id": f"s{n}", "item_id": i, "type": "view"} for i in items]
    events.append({"user_id": "s1", "item_id": "socks", "type": "purchase"})
    response = client.post("/events", json=events)
    assert response.status_code == 202
    assert response.json()["accepted"] == len(events)
    _applied(client)


def _applied(client: TestClient) -> None:
    """Every event posted so far is in the features (the processor applies in the
    background; a test that reads right after posting would race it)."""
    wait_until(caught_up(client.app.state.engine))  # type: ignore[attr-defined]


def _ids(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [i["item_id"] for i in body["items"]]


def test_new_user_is_led_by_co_viewed_items_within_a_second(client: TestClient) -> None:
    _browse(client)
    cold = client.get("/recommendations", params={"user_id": "newbie", "count": 3}).json()
    assert cold["personalised"] is False
    assert all("popular" in i["reasons"][0] for i in cold["items"])

    posted = time.monotonic()
    r = client.post("/events", json={"user_id": "newbie", "item_id": "x", "type": "view"})
    assert r.status_code == 202

    def personal() -> dict | None:  # type: ignore[type-arg]
        body = client.get("/recommendations", params={"user_id": "newbie", "count": 3}).json()
        return body if body["personalised"] else None

    body = wait_until(personal, timeout_s=1.0, every_s=0.005)
    assert time.monotonic() - posted < 1.0
    assert set(_ids(body)) == {"laces", "socks", "insole"}
    assert "viewed together with Trail Shoe (x)" in body["items"][0]["reasons"]
    assert body["items"][0]["title"] in {"Laces", "Socks", "Insole"}

    similar = client.get("/items/x/similar", params={"count": 3}).json()
    assert set(_ids(similar)) == {"laces", "socks", "insole"}
    assert all(i["reasons"] for i in similar["items"])


def test_session_recommendations(client: TestClient) -> None:
    _browse(client)
    client.post(
        "/events",
        json={"user_id": "anon", "session_id": "tab-1", "item_id": "tent", "type": "view"},
    )
    body = wait_until(
        lambda: (
            b
            if (b := client.get("/recommendations", params={"session_id": "tab-1"}).json())[
                "personalised"
            ]
            else None
        )
    )
    assert _ids(body)[0] == "stove"
    assert "soldout" not in _ids(body), "out of stock by default"
    assert body["session_id"] == "tab-1"


def test_rule_options(client: TestClient) -> None:
    _browse(client)
    client.post("/events", json={"user_id": "s1", "item_id": "x", "type": "view"})
    _applied(client)
    params = {"user_id": "s1", "count": 10}

    def ids(**extra: object) -> list[str]:
        return _ids(client.get("/recommendations", params={**params, **extra}).json())

    assert "socks" not in ids(exclude_seen="false"), "purchased items are left out by default"
    assert "socks" in ids(exclude_purchased="false", exclude_seen="false")
    assert "x" not in ids(), "seen items are left out by default"
    assert ids(exclude_seen="false")[0] == "x", "asked for, the item just seen leads"
    assert set(ids(category="camping")) <= {"tent", "stove"}
    assert all(
        (i.get("price") or 0) <= 20
        for i in client.get("/recommendations", params={**params, "max_price": 20}).json()["items"]
    )
    assert "soldout" in ids(in_stock_only="false", category="camping")
    shown = ids(exclude_seen="false")[:2]
    assert not set(shown) & set(ids(exclude_seen="false", exclude=shown)), "a page's own items"
    assert len(ids(exclude_seen="false", exclude=shown, count=2)) == 2, "still a full page"
    diverse = client.get("/recommendations", params={**params, "max_per_category": 1}).json()
    categories = [i["category"] for i in diverse["items"]]
    assert len(categories) == len(set(categories))


def test_count_is_respected_and_padded_with_popular(client: TestClient) -> None:
    _browse(client)
    body = client.get("/recommendations", params={"user_id": "s2", "count": 4}).json()
    assert len(body["items"]) == 4  # 7 items: 3 seen and one sold out leave 4
    assert body["personalised"] is True


def test_popular_by_category(client: TestClient) -> None:
    _browse(client)
    body = client.get("/popular", params={"category": "accessories", "count": 5}).json()
    assert set(_ids(body)) == {"laces", "socks", "insole"}
    assert body["items"][0]["reasons"] == ["popular in accessories"]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_catalog_round_trip(client: TestClient) -> None:
    r = client.put("/items", json={"item_id": "a", "title": "A", "price": 3.5})
    assert r.status_code == 200
    assert r.json()["upserted"] == 1
    client.put("/items", json=[{"item_id": "a", "in_stock": False}])
    item = client.get("/items/a").json()
    assert (item["title"], item["price"], item["in_stock"]) == ("A", 3.5, False)
    missing = client.get("/items/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]


def test_partial_batch_keeps_valid_events(client: TestClient) -> None:
    events = [
        {"user_id": "u", "item_id": "a", "type": "view"},
        {"user_id": "u", "item_id": "", "type": "view"},
        {"user_id": "u", "item_id": "b", "type": "teleport"},
        {"user_id": "u", "item_id": "c", "type": "view"},
    ]
    r = client.post("/events", json=events)
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 2
    assert [x["index"] for x in body["rejected"]] == [1, 2]
    assert "item_id" in body["rejected"][0]["error"]
    assert "teleport" in body["rejected"][1]["error"]
    wait_until(lambda: client.get("/popular").json()["items"])
    assert sorted(_ids(client.get("/popular").json())) == ["a", "c"]


def test_duplicate_event_id_counts_once(client: TestClient) -> None:
    event = {"user_id": "u", "item_id": "a", "type": "purchase", "event_id": "order-1"}
    client.post("/events", json=event)
    client.post("/events", json=event)
    client.post("/events", json={"user_id": "u", "item_id": "b", "type": "view"})
    wait_until(lambda: len(client.get("/popular").json()["items"]) == 2)
    scores = {i["item_id"]: i["score"] for i in client.get("/popular").json()["items"]}
    assert scores["a"] == pytest.approx(10.0, rel=1e-3)


def test_health_metrics_and_docs(client: TestClient) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "alive", "checks": {"processor": True}}
    wait_until(lambda: client.get("/health/ready").status_code == 200)
    client.post("/events", json={"user_id": "u", "item_id": "a", "type": "view"})
    client.get("/recommendations", params={"user_id": "u"})
    client.get("/recommendations", params={"user_id": "u"})
    metrics = client.get("/metrics").text
    for name in (
        "events_ingested_total 1.0",
        "events_processed_total",
        "recommendation_latency_seconds_bucket",
        "recommendation_cache_hits_total",
        "consumer_lag_records{",
    ):
        assert name in metrics
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/events", "/recommendations", "/popular", "/items", "/items/{item_id}/similar"} <= set(
        spec["paths"]
    )


def test_cached_response_is_invalidated_by_the_users_own_event(client: TestClient) -> None:
    _browse(client)
    client.post("/events", json={"user_id": "me", "item_id": "tent", "type": "view"})
    wait_until(
        lambda: client.get("/recommendations", params={"user_id": "me"}).json()["personalised"]
    )
    first = _ids(client.get("/recommendations", params={"user_id": "me", "count": 2}).json())
    client.post("/events", json={"user_id": "me", "item_id": "x", "type": "cart"})
    wait_until(
        lambda: (
            _ids(client.get("/recommendations", params={"user_id": "me", "count": 2}).json())
            != first
        )
    )
