"""Event validation: what is accepted, what is stamped, what is refused and why."""

from __future__ import annotations

import math

import pytest

from reco.events import Event, EventValidator, InvalidEvent
from reco.settings import DEFAULT_EVENT_WEIGHTS, EngineSettings

pytestmark = pytest.mark.unit
NOW = 1_700_000_000.0


@pytest.fixture
def validator() -> EventValidator:
    return EventValidator({**DEFAULT_EVENT_WEIGHTS, "like": 4.0}, max_future_skew_s=300)


def test_minimal_event_is_stamped(validator: EventValidator) -> None:
    event = validator.validate({"user_id": "u", "item_id": "i", "type": "view"}, now=NOW)
    assert event.timestamp == NOW
    assert event.received_at == NOW
    assert len(event.event_id) == 32
    assert event.session_id is None


def test_given_fields_are_kept(validator: EventValidator) -> None:
    raw = {
        "user_id": "u",
        "item_id": "i",
        "type": "like",
        "event_id": "e-1",
        "timestamp": "2023-11-14T22:13:20Z",
        "session_id": "s",
        "properties": {"category": "shoes"},
    }
    event = validator.validate(raw, now=NOW)
    assert event.event_id == "e-1"
    assert event.timestamp == NOW
    assert event.session_id == "s"
    assert event.properties == {"category": "shoes"}


@pytest.mark.parametrize("kind", ["view", "click", "fav", "cart", "purchase"])
def test_default_types_are_accepted(kind: str) -> None:
    settings = EngineSettings()
    validator = EventValidator(settings.event_weights, settings.max_future_skew_s)
    assert validator.validate({"user_id": "u", "item_id": "i", "type": kind}).type == kind


def test_event_weights_from_the_environment_replace_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECO_EVENT_WEIGHTS", '{"view": 1, "like": 4}')
    assert EngineSettings().event_weights == {"view": 1.0, "like": 4.0}


def test_epoch_seconds_accepted(validator: EventValidator) -> None:
    event = validator.validate(
        {"user_id": "u", "item_id": "i", "type": "view", "timestamp": NOW - 10}, now=NOW
    )
    assert event.timestamp == NOW - 10


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"user_id": "", "item_id": "i", "type": "view"}, "user_id"),
        ({"user_id": "   ", "item_id": "i", "type": "view"}, "user_id: Value error, must not be"),
        ({"user_id": "u", "item_id": "x" * 257, "type": "view"}, "item_id"),
        ({"user_id": "u", "item_id": "a\nb", "type": "view"}, "control characters"),
        ({"user_id": 5, "item_id": "i", "type": "view"}, "user_id"),
        ({"user_id": "u", "item_id": "i", "type": "teleport"}, "unknown event type 'teleport'"),
        ({"user_id": "u", "item_id": "i", "type": "VIEW"}, "type"),
        ({"user_id": "u", "item_id": "i"}, "type: Field required"),
        ({"user_id": "u", "item_id": "i", "type": "view", "colour": 1}, "colour"),
        ({"user_id": "u", "item_id": "i", "type": "view", "timestamp": NOW + 3600}, "future"),
        ({"user_id": "u", "item_id": "i", "type": "view", "timestamp": NOW * 1000}, "milli"),
        ({"user_id": "u", "item_id": "i", "type": "view", "timestamp": -1}, "timestamp"),
        ({"user_id": "u", "item_id": "i", "type": "view", "timestamp": math.nan}, "timestamp"),
        ({"user_id": "u", "item_id": "i", "type": "view", "timestamp": "yesterday"}, "timestamp"),
        (
            {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "2023-11-14T22:13:20"},
            "time zone",
        ),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_invalid_events_say_what_is_wrong(
    validator: EventValidator, raw: object, fragment: str
) -> None:
    with pytest.raises(InvalidEvent) as exc:
        validator.validate(raw, now=NOW)
    assert fragment in str(exc.value)


def test_log_record_round_trip(validator: EventValidator) -> None:
    event = validator.validate(
        {"user_id": "u", "item_id": "i", "type": "cart", "properties": {"p": [1, 2]}}, now=NOW
    )
    assert Event.from_json(event.to_json()) == event


def test_undecodable_record_is_invalid() -> None:
    with pytest.raises(InvalidEvent):
        Event.from_json(b"{not json")
    with pytest.raises(InvalidEvent):
        Event.from_json(b'{"user_id": "u"}')
