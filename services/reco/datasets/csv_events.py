"""Generic events CSV: a header naming the wire fields, one event per row.

``user_id``, ``item_id``, ``type`` and ``timestamp`` are required columns; ``session_id`` and
``event_id`` are optional. Any other column becomes a string property. ``timestamp`` is Unix
seconds or an ISO 8601 time (UTC when it has no offset).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from reco.datasets.base import Event, Reader, parse_float, require, table_rows
from reco.datasets.exceptions import DatasetFormatError

REQUIRED = ("user_id", "item_id", "type", "timestamp")
OPTIONAL = ("session_id", "event_id")
_WIRE = frozenset(REQUIRED + OPTIONAL)


def read_events(path: Path) -> Iterator[Event]:
    """Stream the rows in file order; empty optional cells and properties are left out."""
    for line, row in table_rows(path, ",", REQUIRED):
        event: Event = {field: require(path, line, field, row[field]) for field in REQUIRED[:3]}
        event["timestamp"] = _timestamp(path, line, row["timestamp"])
        event.update((field, row[field]) for field in OPTIONAL if row.get(field))
        event["properties"] = {
            key: value for key, value in row.items() if key not in _WIRE and value
        }
        yield event


def _timestamp(path: Path, line: int, value: str) -> float:
    try:
        return parse_float(path, line, "timestamp", value)
    except DatasetFormatError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        reason = f"timestamp {value!r} is neither Unix seconds nor an ISO 8601 time"
        raise DatasetFormatError(path, line, reason) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


READER = Reader("csv", "generic events CSV with a header of wire field names", read_events)
