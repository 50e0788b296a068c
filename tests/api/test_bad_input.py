"""A catalogue of bad inputs: each gets a clear 4xx that says what was wrong, and changes
nothing (the event log, the features and the catalog are the same before and after)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from reco.embedded import EmbeddedEngine
from tests.conftest import caught_up, wait_until

pytestmark = pytest.mark.api

GOOD = {"user_id": "u", "item_id": "a", "type": "view"}
TEN_MB = b'{"user_id": "u", "item_id": "' + b"a" * (10 * 1024 * 1024) + b'", "type": "view"}'


def _state(client: TestClient) -> tuple[Any, ...]:
    engine: EmbeddedEngine = client.app.state.engine  # type: ignore[attr-defined]
    wait_until(caught_up(engine))
    return (
        engine.producer.end_offset(),
        engine.store.snapshot(),
        engine.catalog.count(),
        client.get("/items/a").json(),
    )


EVENT_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("wrong type of id", {"json": {**GOOD, "user_id": 7}}, 422, "user_id"),
    ("unknown event type", {"json": {**GOOD, "type": "teleport"}}, 422, "unknown event type"),
    ("empty id", {"json": {**GOOD, "item_id": ""}}, 422, "item_id"),
    ("missing field", {"json": {"user_id": "u", "type": "view"}}, 422, "item_id: Field required"),
    ("10 MB body", {"content": TEN_MB}, 413, "RECO_MAX_BODY_BYTES"),
    ("batch over the limit", {"json": [GOOD] * 1001}, 413, "limit is 1000"),
    ("invalid UTF-8", {"content": b'{"user_id": "\xff\xfe"}'}, 400, "not valid UTF-8"),
    ("not JSON", {"content": b"user_id=u&item_id=a"}, 400, "not valid JSON"),
    ("empty body", {"content": b""}, 400, "empty"),
    ("empty batch", {"json": []}, 422, "empty"),
    ("a JSON string", {"json": "view"}, 422, "JSON object"),
    ("far-future timestamp", {"json": {**GOOD, "timestamp": 4102444800}}, 422, "future"),
    ("milliseconds", {"json": {**GOOD, "timestamp": 1700000000000}}, 422, "milliseconds"),
    ("timestamp without zone", {"json": {**GOOD, "timestamp": "2024-01-01T00:00:00"}}, 422, "zone"),
    (
        "NaN timestamp",
        {"content": b'{"user_id":"u","item_id":"a","type":"view","timestamp":NaN}'},
        400,
        "JSON",
    ),
    ("unknown field", {"json": {**GOOD, "usr": "x"}}, 422, "usr"),
    ("id too long", {"json": {**GOOD, "item_id": "i" * 300}}, 422, "item_id"),
    (
        "whole batch invalid",
        {"json": [{**GOOD, "type": "x"}, {**GOOD, "user_id": ""}]},
        422,
        "index",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [c[1:] for c in EVENT_CASES],
    ids=[c[0] for c in EVENT_CASES],
)
def test_bad_events(client: TestClient, kwargs: dict[str, Any], status: int, fragment: str) -> None:
    client.post("/events", json=GOOD)
    client.put("/items", json={"item_id": "a", "price": 1.0})
    before = _state(client)
    response = client.post("/events", **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert _state(client) == before


ITEM_CASES: list[tuple[str, Any, int, str]] = [
    ("negative price", {"item_id": "a", "price": -1}, 422, "price"),
    ("NaN price", b'{"item_id": "a", "price": NaN}', 400, "JSON"),
    ("NaN price as string", {"item_id": "a", "price": "NaN"}, 422, "price"),
    ("infinite price", {"item_id": "a", "price": "inf"}, 422, "price"),
    ("price not a number", {"item_id": "a", "price": "cheap"}, 422, "price"),
    ("empty id", {"item_id": ""}, 422, "item_id"),
    ("unknown field", {"item_id": "a", "colour": "red"}, 422, "colour"),
    (
        "one bad item spoils the batch",
        [{"item_id": "b"}, {"item_id": "c", "price": -2}],
        422,
        "1.price",
    ),
    ("stock not a boolean", {"item_id": "a", "in_stock": "maybe"}, 422, "in_stock"),
]


@pytest.mark.parametrize(
    ("body", "status", "fragment"), [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES]
)
def test_bad_items(client: TestClient, body: Any, status: int, fragment: str) -> None:
    client.put("/items", json={"item_id": "a", "price": 1.0})
    before = _state(client)
    if isinstance(body, bytes):
        response = client.put("/items", content=body)
    else:
        response = client.put("/items", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.text
    assert _state(client) == before


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "exactly one of user_id and session_id"),
        ({"user_id": "u", "session_id": "s"}, "exactly one"),
        ({"user_id": "u", "count": 0}, "count"),
        ({"user_id": "u", "count": 10_000}, "count"),
        ({"user_id": "u", "min_price": 10, "max_price": 5}, "min_price must not exceed max_price"),
        ({"user_id": "u", "min_price": -1}, "min_price"),
        ({"user_id": "u", "max_per_category": 0}, "max_per_category"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u", "exclude": [""]}, "exclude"),
        ({"user_id": "u", "exclude": [f"i{n}" for n in range(501)]}, "exclude"),
    ],
)
def test_bad_recommendation_queries(
    client: TestClient, params: dict[str, Any], fragment: str
) -> None:
    response = client.get("/recommendations", params=params)
    assert response.status_code == 422
    assert fragment in response.text


def test_item_created_at_needs_a_time_zone(client: TestClient) -> None:
    response = client.put("/items", json={"item_id": "a", "created_at": "2026-03-01T12:30:00"})
    assert response.status_code == 422
    assert "created_at" in response.text
    assert "timezone" in response.text.lower() or "time zone" in response.text.lower()
