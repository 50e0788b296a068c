"""JSON Lines: one event object per line, passed through unchanged for the engine to validate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from reco.datasets.base import Event, Reader, open_text
from reco.datasets.exceptions import DatasetFormatError


def read_events(path: Path) -> Iterator[Event]:
    """Stream the objects in file order; blank lines are passed over."""
    with open_text(path) as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield _event(path, number, line)


def _event(path: Path, line: int, text: str) -> Event:
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise DatasetFormatError(path, line, f"invalid JSON: {error}") from None
    if not isinstance(event, dict):
        raise DatasetFormatError(path, line, f"expected a JSON object, got {type(event).__name__}")
    return event


READER = Reader("jsonl", "JSON Lines, one wire-format event object per line", read_events)
