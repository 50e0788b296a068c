"""DIGINETICA (CIKM Cup 2016) ``train-item-views.csv``: anonymous and logged-in item views.

Rows are ``session_id;user_id;item_id;timeframe;eventdate`` where ``timeframe`` is the ms since
the session's first event and ``eventdate`` the day, so the timestamp is that day's UTC midnight
plus the offset. Anonymous sessions (``user_id`` NA) get the user id ``s<session_id>``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from reco.datasets.base import Event, Reader, parse_int, require, split_rows
from reco.datasets.exceptions import DatasetFormatError

HEADER = "session_id;user_id;item_id;timeframe;eventdate"
ANONYMOUS = "NA"


def read_events(path: Path) -> Iterator[Event]:
    """Stream the views in file order (grouped by session, not sorted by time)."""
    for line, (session, user, item, timeframe, day) in split_rows(path, ";", 5, header=HEADER):
        require(path, line, "session_id", session)
        offset_ms = parse_int(path, line, "timeframe", timeframe)
        yield {
            "user_id": f"s{session}" if user == ANONYMOUS else require(path, line, "user_id", user),
            "item_id": require(path, line, "item_id", item),
            "type": "view",
            "timestamp": _midnight(path, line, day) + offset_ms / 1000,
            "session_id": session,
            "properties": {},
        }


def _midnight(path: Path, line: int, day: str) -> float:
    midnight = _utc_midnight(day)
    if midnight is None:
        raise DatasetFormatError(path, line, f"eventdate {day!r} is not a YYYY-MM-DD date")
    return midnight


@lru_cache(maxsize=4096)
def _utc_midnight(day: str) -> float | None:
    # A few hundred distinct days cover millions of rows, so each is parsed once.
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        return None
    return dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).timestamp()


READER = Reader(
    "diginetica", "DIGINETICA train-item-views (semicolon-separated views)", read_events
)
