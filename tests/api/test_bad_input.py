"""A catalogue of bad inputs: each gets a clear 4xx that says what was wrong, and changes
nothing (the event log, the features and the catalog are the same before and after).

Every answer is short and free of validator internals: a client never sees a union
branch's name, pydantic's ``input`` echo or its URLs, nor its own huge value sent back.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from reco.embedded import EmbeddedEngine
from tests.conftest import caught_up, wait_until

pytestmark = pytest.mark.api

GOOD = {"user_id": "u", "item_id": "a", "type": "view"}
TEN_MB = b'{"user_id": "u", "item_id": "' + b"a" * (10 * 1024 * 1024) + b'", "type": "view"}'
YEAR_9999 = 253402300799
LEAKS = ("constrained-float", ".str:", "Value error", '"input"', "pydantic.dev", "ItemIn", "list[")
MAX_ERROR_BYTES = 2048


def assert_readable(response: Any) -> None:
    """Short, and nothing of the validator in it."""
    assert len(response.content) < MAX_ERROR_BYTES, response.text[:300]
    for leak in LEAKS:
        assert leak not in response.text, (leak, response.text)


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
    ("1e308 timestamp", {"json": {**GOOD, "timestamp": 1e308}}, 422, "1e+308 is more than"),
    ("year 9999", {"json": {**GOOD, "timestamp": YEAR_9999}}, 422, "(9999-12-31T23:59:59Z)"),
    ("negative timestamp", {"json": {**GOOD, "timestamp": -1}}, 422, "number >= 0"),
    ("boolean timestamp", {"json": {**GOOD, "timestamp": True}}, 422, "got true"),
    ("object timestamp", {"json": {**GOOD, "timestamp": {"s": 1}}}, 422, "RFC 3339"),
    ("long junk timestamp", {"json": {**GOOD, "timestamp": "x" * 5000}}, 422, "(5000 characters)"),
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
    assert_readable(response)
    assert _state(client) == before


def test_a_year_9999_timestamp_gets_no_milliseconds_hint(client: TestClient) -> None:
    response = client.post("/events", json={**GOOD, "timestamp": YEAR_9999})
    assert response.status_code == 422
    assert "milliseconds" not in response.text


def test_no_event_valid_answers_the_202_shape_with_a_detail(client: TestClient) -> None:
    response = client.post("/events", json=[{**GOOD, "type": "x"}, {**GOOD, "user_id": ""}])
    assert response.status_code == 422
    body = response.json()
    assert body["accepted"] == 0
    assert body["event_ids"] == []
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert "no event is valid" in body["detail"]


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
        "[1].price",
    ),
    ("not an object", ["a"], 422, "[0]: must be a JSON object"),
    ("stock not a boolean", {"item_id": "a", "in_stock": "maybe"}, 422, "in_stock"),
    ("stock as a number", {"item_id": "a", "in_stock": 0}, 422, "in_stock: must be true or false"),
    ("price as a string", {"item_id": "a", "price": "9.5"}, 422, "price: Input should be a valid"),
    ("created_at as a number", {"item_id": "a", "created_at": 0}, 422, "created_at: must be"),
    ("empty batch", [], 422, "the batch is empty"),
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
    assert_readable(response)
    assert _state(client) == before


QUERY_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({}, "user_id", "give exactly one of user_id and session_id"),
    ({"user_id": "u", "session_id": "s"}, "session_id", "exactly one"),
    ({"user_id": "u", "count": 0}, "count", "greater than or equal to 1"),
    ({"user_id": "u", "count": 10_000}, "count", "less than or equal to 200"),
    ({"user_id": "u", "count": "many"}, "count", "valid integer"),
    ({"user_id": "u", "count": "9" * 5000}, "count", "as an integer"),
    ({"user_id": "u", "min_price": 10, "max_price": 5}, "max_price", "at least min_price (5 < 10)"),
    ({"user_id": "u", "min_price": -1}, "min_price", "greater than or equal to 0"),
    ({"user_id": "u", "min_price": "inf"}, "min_price", "finite"),
    ({"user_id": "u", "max_per_category": 0}, "max_per_category", "greater than or equal to 1"),
    ({"user_id": "u", "in_stock_only": "maybe"}, "in_stock_only", "true or false"),
    ({"user_id": ""}, "user_id", "at least 1 character"),
    ({"user_id": "u" * 5000}, "user_id", "at most 256 characters"),
    ({"user_id": "u", "exclude": [""]}, "exclude[0]", "at least 1 character"),
    ({"user_id": "u", "exclude": [f"i{n}" for n in range(501)]}, "exclude", "at most 500 items"),
]


@pytest.mark.parametrize(("params", "field", "fragment"), QUERY_CASES)
def test_bad_recommendation_queries(
    client: TestClient, params: dict[str, Any], field: str, fragment: str
) -> None:
    response = client.get("/recommendations", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert fragment in body["detail"]
    assert body["detail"].startswith(f"{field}: ")
    assert {"field": field, "location": "query"}.items() <= body["errors"][0].items()
    assert_readable(response)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/popular?count=0", "count: Input should be greater than or equal to 1"),
        ("/items/a/similar?max_price=-3", "max_price: Input should be greater than or equal to 0"),
        ("/items/" + "x" * 300, "item_id: String should have at most 256 characters"),
    ],
)
def test_bad_parameters_of_other_reads(client: TestClient, path: str, fragment: str) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
    assert_readable(response)


def test_an_unknown_item_is_named_but_not_echoed_whole(client: TestClient) -> None:
    response = client.get("/items/" + "z" * 256)
    assert response.status_code == 404
    body = response.json()
    assert "(256 characters)" in body["detail"]
    assert "PUT /items" in body["detail"]
    assert body["errors"] == []
    assert_readable(response)


def test_unknown_paths_and_methods_answer_the_error_shape(client: TestClient) -> None:
    assert client.get("/nowhere").json() == {"detail": "Not Found", "errors": []}
    response = client.delete("/events")
    assert response.status_code == 405
    assert response.json()["detail"] == "Method Not Allowed"


def test_item_created_at_needs_a_time_zone(client: TestClient) -> None:
    response = client.put("/items", json={"item_id": "a", "created_at": "2026-03-01T12:30:00"})
    assert response.status_code == 422
    assert "created_at" in response.text
    assert "timezone" in response.text.lower() or "time zone" in response.text.lower()
