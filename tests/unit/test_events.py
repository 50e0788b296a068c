"""Event validation: what is accepted, what is stamped, what is refused and why."""

from __future__ import annotations

import math

import pytest

from reco.events import TIMESTAMP_HELP, Event, EventValidator, InvalidEvent
from reco.settings import DEFAULT_EVENT_WEIGHTS, EngineSettings
from reco.validation import ECHO_CHARS, echo, field_path

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
        ({"user_id": "   ", "item_id": "i", "type": "view"}, "user_id: must not be empty or blank"),
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


def _refusal(validator: EventValidator, timestamp: object) -> str:
    with pytest.raises(InvalidEvent) as exc:
        validator.validate({"user_id": "u", "item_id": "i", "type": "view", "timestamp": timestamp})
    return str(exc.value)


def test_a_huge_timestamp_is_not_echoed_digit_by_digit(validator: EventValidator) -> None:
    message = _refusal(validator, 1e308)
    assert "1e+308 is more than 300 s in the future" in message
    assert "0000000000" not in message
    assert len(message) < 150


@pytest.mark.parametrize(
    ("timestamp", "unit"),
    [(NOW * 1e3, "milliseconds"), (NOW * 1e6, "microseconds"), (NOW * 1e9, "nanoseconds")],
)
def test_a_timestamp_in_a_smaller_unit_is_named(
    validator: EventValidator, timestamp: float, unit: str
) -> None:
    assert f"it looks like {unit}: send seconds" in _refusal(validator, timestamp)


@pytest.mark.parametrize("timestamp", [253402300799, "9999-12-31T23:59:59Z", 1e308, 2e11])
def test_no_unit_hint_when_the_value_is_no_plausible_time_in_that_unit(
    validator: EventValidator, timestamp: object
) -> None:
    message = _refusal(validator, timestamp)
    assert "in the future" in message
    assert "looks like" not in message


def test_a_far_future_timestamp_shows_its_date(validator: EventValidator) -> None:
    assert "253402300799 (9999-12-31T23:59:59Z)" in _refusal(validator, 253402300799)


@pytest.mark.parametrize(
    ("timestamp", "shown"),
    [
        (-1, "-1"),
        (-1e308, "-1e+308"),
        ("-5", "'-5'"),
        (math.inf, "inf"),
        ("inf", "'inf'"),
        ("NaN", "'NaN'"),
        (True, "true"),
        ({"seconds": 1}, "{'seconds': 1}"),
        ([1, 2], "[1, 2]"),
        ("yesterday", "'yesterday'"),
        ("1900-01-01T00:00:00Z", "'1900-01-01T00:00:00Z'"),
    ],
)
def test_a_wrong_timestamp_gets_one_plain_message(
    validator: EventValidator, timestamp: object, shown: str
) -> None:
    assert _refusal(validator, timestamp) == f"timestamp: {TIMESTAMP_HELP}, got {shown}"


def test_a_long_wrong_timestamp_is_cut_and_its_length_given(validator: EventValidator) -> None:
    message = _refusal(validator, "7" * 10_000)
    assert message.endswith("… (10000 characters)")
    assert len(message) < len(TIMESTAMP_HELP) + 100


def test_echo_cuts_long_values_and_says_how_long_they_were() -> None:
    assert echo("abc") == "'abc'"
    assert echo("x" * 1000) == repr("x" * ECHO_CHARS) + "… (1000 characters)"
    assert echo(1e308) == "1e+308"
    assert echo(1700000000.5) == "1700000000.5"
    assert echo(list(range(100))).endswith("characters)")


def test_field_paths_read_like_json() -> None:
    assert field_path(("exclude", 3)) == "exclude[3]"
    assert field_path((1, "price")) == "[1].price"
    assert field_path(("properties", "a", "b")) == "properties.a.b"
    assert field_path(()) == "value"


def test_unknown_fields_and_wrong_kinds_are_said_plainly(validator: EventValidator) -> None:
    with pytest.raises(InvalidEvent) as exc:
        validator.validate({"user_id": "u", "item_id": "i", "type": "view", "usr": 1})
    assert str(exc.value) == "usr: unknown field"
    with pytest.raises(InvalidEvent) as exc:
        validator.validate({"user_id": "u", "item_id": "i", "type": "view", "properties": [1]})
    assert str(exc.value) == "properties: must be a JSON object"


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
