"""Interaction events: the wire schema, its validation, and the internal record.

The wire schema (``EventIn``) checks shape; ``EventValidator`` checks what depends on the
settings (known event types, how far in the future a timestamp may be) and stamps what the
client left out (``event_id``, ``timestamp``). ``session_id`` is left ``None`` when absent:
the processor derives it, because only it sees each user's previous event.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from reco.exceptions import RecoError

MAX_ID_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


def _check_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Identifier = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_check_id)
]


class EventIn(BaseModel):
    """One interaction as a client sends it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user_id: Identifier
    item_id: Identifier
    type: Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]
    event_id: Identifier | None = None
    timestamp: Annotated[float, Field(ge=0)] | str | None = Field(
        None, description="RFC 3339 or Unix epoch seconds; server time when absent."
    )
    session_id: Identifier | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


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
        return orjson.dumps(data)

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
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent(f"undecodable event record: {exc}") from exc


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the field: ``item_id: String should have ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class EventValidator:
    """Turns raw JSON values into ``Event``s under the engine's settings."""

    def __init__(self, event_weights: Mapping[str, float], max_future_skew_s: float) -> None:
        self._types = frozenset(event_weights)
        self._skew = max_future_skew_s

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
            hint = " (it looks like milliseconds; send seconds)" if ts > now * 100 else ""
            raise InvalidEvent(
                f"timestamp: {ts:.0f} is more than {self._skew:.0f} s in the future{hint}"
            )
        return Event(
            event_id=wire.event_id or uuid.uuid4().hex,
            user_id=wire.user_id,
            item_id=wire.item_id,
            type=wire.type,
            timestamp=ts,
            received_at=now,
            session_id=wire.session_id,
            properties=wire.properties,
            trace=trace,
        )


def _epoch(value: float | str | None, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return _rfc3339(str(value))
    if not math.isfinite(value) or value < 0:
        raise InvalidEvent("timestamp: must be a finite number of seconds >= 0")
    return float(value)


def _rfc3339(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(
            f"timestamp: {value[:40]!r} is neither RFC 3339 nor Unix epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidEvent("timestamp: an RFC 3339 timestamp needs a time zone (Z or +hh:mm)")
    return parsed.timestamp()
