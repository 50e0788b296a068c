"""Interaction events: the wire schema, its validation, and the internal record.

The wire schema (``EventIn``) checks shape; ``EventValidator`` checks what depends on the
settings (known event types, how far in the future a timestamp may be) and stamps what the
client left out (``event_id``, ``timestamp``). ``session_id`` is left ``None`` when absent:
the processor derives it, because only it sees each user's previous event.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from reco.exceptions import RecoError
from reco.validation import echo, format_validation_error

MAX_ID_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What _check_id accepts, for the schema only: clients and fuzzers read it there, while the
# check itself stays in Python (pydantic's regex engine would differ on what is a space).
_ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
_TYPE = re.compile(EVENT_TYPE_PATTERN)
TIMESTAMP_HELP = (
    "must be Unix epoch seconds (a number >= 0) or an RFC 3339 date-time with a time zone"
)
# Before 2000 no event of a shop is plausible: a value that lands there once divided by
# 1000 was not sent in milliseconds (year 9999 in seconds is 1978 in milliseconds).
_PLAUSIBLE_SINCE = 946_684_800.0
_UNITS = (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9))
# One encoder for every log record: msgspec's keeps its buffer between calls, where
# orjson.dumps allocates one per record (2.5 µs an event in a batch of 1000, against 0.2).
_ENCODER = msgspec.json.Encoder()


def _check_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


_FastId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
"""``Identifier``'s lengths for msgspec; its other checks are :func:`_plain`."""


def _plain(value: str | None) -> bool:
    """What ``_check_id`` accepts, true or false instead of a message. ``isprintable`` clears
    a usual id in C; only one with some non-printable character (which may be a harmless
    one, such as a non-breaking space) is searched for control characters."""
    return value is None or (
        not value.isspace() and (value.isprintable() or not _CONTROL.search(value))
    )


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, json_schema_extra={"pattern": _ID_PATTERN}),
    AfterValidator(_check_id),
]


def _one_timestamp_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One plain message for every wrong timestamp, instead of one per branch of the union
    (``timestamp.constrained-float: ...; timestamp.str: ...``)."""
    if isinstance(value, bool):  # JSON true is not 1.0 seconds
        raise ValueError(f"{TIMESTAMP_HELP}, got {echo(value).lower()}")
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(f"{TIMESTAMP_HELP}, got {echo(value)}") from None


Timestamp = Annotated[
    Annotated[float, Field(ge=0)] | str | None, WrapValidator(_one_timestamp_error)
]


class EventIn(BaseModel):
    """One interaction as a client sends it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user_id: Identifier
    item_id: Identifier
    type: Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]
    event_id: Identifier | None = None
    timestamp: Timestamp = Field(
        None, description="RFC 3339 or Unix epoch seconds; server time when absent."
    )
    session_id: Identifier | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    recommendation_id: Identifier | None = Field(
        None,
        description=(
            "The `recommendation_id` of the response the item was shown in, when the event "
            "comes from a recommendation (a click on it, its item put in the cart): the "
            "event is attributed to that recommendation's experiment variant."
        ),
    )


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True):
    """The checks of ``EventIn`` that msgspec runs in C: types, lengths, no unknown field.

    The batch path (``EventValidator.validate_batch``) runs these, then the rest of
    ``EventIn``'s checks in Python (:func:`_plain`, the known types, the timestamp). It only
    ever accepts what ``EventIn`` accepts: msgspec's conversion is strict (no ``"5"`` for a
    number, no ``true`` for a timestamp), and anything it refuses goes through ``EventIn``
    again for the message.
    """

    user_id: _FastId
    item_id: _FastId
    type: str
    event_id: _FastId | None = None
    timestamp: float | str | None = None
    session_id: _FastId | None = None
    properties: dict[str, Any] = {}
    recommendation_id: _FastId | None = None


class InvalidEvent(RecoError):
    """An event that breaks the schema or a setting; ``str()`` says what and where."""


@dataclass(frozen=True, slots=True)
class Event:
    """A validated, stamped event: what the event log holds and the processor applies."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    timestamp: float
    received_at: float
    session_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    trace: str | None = None
    """W3C ``traceparent`` of the request that accepted the event, when tracing is on."""
    recommendation_id: str | None = None
    """The recommendation the client says the event came from (see ``reco.experiments``)."""

    def to_json(self) -> bytes:
        data = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "type": self.type,
            "timestamp": self.timestamp,
            "received_at": self.received_at,
            "session_id": self.session_id,
            "properties": self.properties,
        }
        if self.trace is not None:
            data["trace"] = self.trace
        if self.recommendation_id is not None:
            data["recommendation_id"] = self.recommendation_id
        return _ENCODER.encode(data)

    @classmethod
    def from_json(cls, payload: bytes | str) -> Event:
        """Decode a log record; raises ``InvalidEvent`` on anything but a stamped event."""
        try:
            data = orjson.loads(payload)
            return cls(
                event_id=str(data["event_id"]),
                user_id=str(data["user_id"]),
                item_id=str(data["item_id"]),
                type=str(data["type"]),
                timestamp=float(data["timestamp"]),
                received_at=float(data.get("received_at", data["timestamp"])),
                session_id=data.get("session_id"),
                properties=data.get("properties") or {},
                trace=data.get("trace"),
                recommendation_id=data.get("recommendation_id"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent(f"undecodable event record: {exc}") from exc


class EventValidator:
    """Turns raw JSON values into ``Event``s under the engine's settings."""

    def __init__(self, event_weights: Mapping[str, float], max_future_skew_s: float) -> None:
        self._types = frozenset(event_weights)
        # The known types that EventIn's pattern lets through: the batch path checks both.
        self._plain_types = frozenset(t for t in self._types if _TYPE.fullmatch(t))
        self._skew = max_future_skew_s

    def validate_batch(
        self, raws: list[Any], *, now: float, trace: str | None = None
    ) -> list[Event] | None:
        """Every event of ``raws`` stamped, or ``None`` as soon as one is not valid: then
        ``validate``, event by event, says which and why.

        The same checks and stamps as ``validate``, at a fraction of its cost per event (a
        batch of 1000 spends ~2 µs an event here against ~6 µs through pydantic): the shape is
        checked by msgspec in C, the rest in one loop, and new event ids are drawn at once.
        """
        try:
            wires = msgspec.convert(raws, list[_WireEvent])
        except msgspec.ValidationError:
            return None
        types, latest = self._plain_types, now + self._skew
        new_ids = iter(new_event_ids(sum(1 for w in wires if w.event_id is None)))
        events = []
        for w in wires:
            if not (
                w.type in types
                and _plain(w.user_id)
                and _plain(w.item_id)
                and _plain(w.event_id)
                and _plain(w.session_id)
                and _plain(w.recommendation_id)
            ):
                return None
            try:
                ts = now if w.timestamp is None else _epoch(w.timestamp, now)
            except InvalidEvent:
                return None
            if ts > latest:
                return None
            event_id = next(new_ids) if w.event_id is None else w.event_id
            events.append(
                Event(event_id, w.user_id, w.item_id, w.type, ts, now, w.session_id,
                      w.properties, trace, w.recommendation_id)
            )  # fmt: skip
        return events

    def validate(self, raw: Any, *, now: float | None = None, trace: str | None = None) -> Event:
        if not isinstance(raw, dict):
            raise InvalidEvent(f"an event must be a JSON object, got {type(raw).__name__}")
        try:
            wire = EventIn.model_validate(raw)
        except ValidationError as exc:
            raise InvalidEvent(format_validation_error(exc)) from None
        return self.stamp(wire, now=time.time() if now is None else now, trace=trace)

    def stamp(self, wire: EventIn, *, now: float, trace: str | None = None) -> Event:
        if wire.type not in self._types:
            known = ", ".join(sorted(self._types))
            raise InvalidEvent(
                f"type: unknown event type {wire.type!r}; known types are {known} "
                "(RECO_EVENT_WEIGHTS sets the accepted types: it replaces the whole map, "
                "so list the defaults with the new one)"
            )
        ts = _epoch(wire.timestamp, now)
        if ts > now + self._skew:
            raise InvalidEvent(
                f"timestamp: {_when(ts)} is more than {self._skew:.0f} s in the future"
                f"{_unit_hint(ts, now + self._skew)}; send when the event happened"
            )
        return Event(
            event_id=wire.event_id or new_event_ids(1)[0],
            user_id=wire.user_id,
            item_id=wire.item_id,
            type=wire.type,
            timestamp=ts,
            received_at=now,
            session_id=wire.session_id,
            properties=wire.properties,
            trace=trace,
            recommendation_id=wire.recommendation_id,
        )


def new_event_ids(count: int) -> list[str]:
    """``count`` ids as ``uuid.uuid4().hex`` makes them (random, version 4, 32 hex digits),
    from one read of the system's random source instead of one read and one UUID object
    each (``uuid4`` costs ~2 µs; this ~0.1 µs an id)."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_UUID_VERSION)
    raw[8::16] = raw[8::16].translate(_UUID_VARIANT)
    text = raw.hex()
    return [text[start : start + 32] for start in range(0, 32 * count, 32)]


# RFC 4122 (section 4.4): the version nibble 4 in byte 6, the variant bits 10 in byte 8.
_UUID_VERSION = bytes(b & 0x0F | 0x40 for b in range(256))
_UUID_VARIANT = bytes(b & 0x3F | 0x80 for b in range(256))


def _epoch(value: float | str | None, now: float) -> float:
    if value is None:
        return now
    seconds = _seconds(value) if isinstance(value, str) else value
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidEvent(f"timestamp: {TIMESTAMP_HELP}, got {echo(value)}")
    return float(seconds)


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return _rfc3339(value)


def _when(ts: float) -> str:
    """Seconds as a message shows them: with their date when they have one."""
    try:
        date = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # past year 9999
        return echo(ts)
    return f"{echo(ts)} ({date})"


def _unit_hint(ts: float, latest: float) -> str:
    """Name the unit the client probably sent, when ``ts`` in it is a plausible time."""
    for unit, per_second in _UNITS:
        if _PLAUSIBLE_SINCE <= ts / per_second <= latest:
            return f" (it looks like {unit}: send seconds)"
    return ""


def _rfc3339(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"timestamp: {TIMESTAMP_HELP}, got {echo(value)}") from None
    if parsed.tzinfo is None:
        raise InvalidEvent(
            f"timestamp: {echo(value)} has no time zone; add one (Z or +hh:mm) as RFC 3339 asks"
        )
    return parsed.timestamp()
