"""Event validation: what is accepted, what is stamped, what is refused and why."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reco.events import TIMESTAMP_HELP, Event, EventValidator, InvalidEvent, new_event_ids
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
    # The batch path refuses it too, wherever it is in the batch (and validate says why).
    good = {"user_id": "u", "item_id": "i", "type": "view"}
    assert validator.validate_batch([good, raw, good], now=NOW) is None


def _one_by_one(validator: EventValidator, raw: object) -> Event | None:
    try:
        return validator.validate(raw, now=NOW, trace="tp")
    except InvalidEvent:
        return None


def _same_but_generated_ids(fast: Event, slow: Event, raw: Any) -> None:
    if raw.get("event_id") is None:
        assert uuid.UUID(fast.event_id).hex == fast.event_id
        fast = Event(**{**_fields(fast), "event_id": slow.event_id})
    assert fast == slow


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in Event.__slots__}


ACCEPTED_CASES: list[dict[str, Any]] = [
    {"user_id": "u", "item_id": "i", "type": "like"},
    {"user_id": "u", "item_id": "i", "type": "view", "event_id": "e", "session_id": "s"},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": 1_600_000_000},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": NOW + 299.5},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "2023-11-14T22:13:20+01:00"},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "1600000000.5"},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": None, "event_id": None},
    {"user_id": "a\u00a0b", "item_id": "é" * 256, "type": "cart", "properties": {"p": [1, {}]}},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "1600000000", "properties": {}},
    {"user_id": "u\u2028", "item_id": "\x85i", "type": "view"},
]
REFUSED_CASES: list[dict[str, Any]] = [  # each by a different check
    {"user_id": "\u00a0", "item_id": "i", "type": "view"},
    {"user_id": "u", "item_id": "i\u2028\x85", "type": "view", "session_id": " \t"},
    {"user_id": "u", "item_id": "i", "type": "view", "event_id": "a\x7fb"},
    {"user_id": "u", "item_id": "é" * 257, "type": "view"},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": True},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": -0.5},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "-5"},
    {"user_id": "u", "item_id": "i", "type": "view", "timestamp": NOW + 300.5},
    {"user_id": "u", "item_id": "i", "type": "view", "properties": None},
    {"user_id": "u", "item_id": "i", "type": "view", "event_id": ""},
    {"user_id": "u", "item_id": "i", "type": "view", "session_id": 5},
    {"user_id": "u", "item_id": "i", "type": "view\n"},
    {"user_id": "u", "item_id": "i", "type": "Odd"},
    {"user_id": "u", "item_id": "i", "type": "x" * 33},
    {"user_id": "u", "type": "view"},
    {"user_id": "u", "item_id": "i", "type": "view", "trace": "x"},
]


@pytest.mark.parametrize("raw", ACCEPTED_CASES + REFUSED_CASES)
def test_the_batch_path_accepts_and_stamps_exactly_what_validate_does(raw: dict[str, Any]) -> None:
    # "Odd" is known but does not match EventIn's pattern; "x" * 33 neither.
    validator = EventValidator(
        {**DEFAULT_EVENT_WEIGHTS, "like": 4.0, "Odd": 1.0, "x" * 33: 1.0}, max_future_skew_s=300
    )
    slow = _one_by_one(validator, raw)
    fast = validator.validate_batch([raw], now=NOW, trace="tp")
    assert (slow is not None) == (raw in ACCEPTED_CASES)
    assert (fast is None) == (slow is None), (raw, slow)
    if fast is not None and slow is not None:
        _same_but_generated_ids(fast[0], slow, raw)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
# Mostly valid values, so that both paths accept a good share of the events drawn.
_IDS = st.sampled_from(["u", "item-7", "a\u00a0b"]) | st.text(min_size=1, max_size=4)
_TIMESTAMPS = st.one_of(
    st.none(),
    st.floats(0, NOW + 300),
    st.integers(0, int(NOW)),
    st.sampled_from(["2023-11-14T22:13:20Z", "1e9"]),
    st.floats(allow_nan=False) | st.integers(),
    st.sampled_from(["2023-11-14T22:13:20", "nan", "x", True, NOW + 301]),
)
_OPTIONAL = {
    "event_id": st.none() | _IDS,
    "timestamp": _TIMESTAMPS,
    "session_id": st.none() | _IDS,
    "properties": st.dictionaries(st.text(max_size=3), _JSON, max_size=2),
}


@st.composite
def _raw_events(draw: st.DrawFn) -> dict[str, Any]:
    raw = {
        "user_id": draw(_IDS),
        "item_id": draw(_IDS),
        "type": draw(st.sampled_from(["view", "cart", "purchase", "VIEW", "teleport", "v\n"])),
    }
    for name in sorted(draw(st.sets(st.sampled_from(sorted(_OPTIONAL))))):
        raw[name] = draw(_OPTIONAL[name])
    if draw(st.integers(0, 9)) == 0:  # a field missing, one too many, properties not a dict
        raw.update(draw(st.sampled_from([{"usr": 1}, {"properties": [1]}, {"properties": None}])))
        if draw(st.booleans()):
            raw.pop("item_id")
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_raw_events())
def test_the_batch_path_agrees_with_validate_on_any_event(raw: dict[str, Any]) -> None:
    validator = EventValidator(DEFAULT_EVENT_WEIGHTS, max_future_skew_s=300)
    slow = _one_by_one(validator, raw)
    fast = validator.validate_batch([raw], now=NOW, trace="tp")
    assert (fast is None) == (slow is None), (raw, slow)
    if fast is not None and slow is not None:
        _same_but_generated_ids(fast[0], slow, raw)


def test_new_event_ids_are_random_version_4_uuids_as_uuid4_hex_writes_them() -> None:
    ids = new_event_ids(1000)
    assert len(set(ids)) == 1000
    for event_id in ids:
        parsed = uuid.UUID(event_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == event_id
    assert new_event_ids(0) == []


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
