"""The ``session-tsv`` format of session-rec: ``SessionId \\t ItemId \\t Time`` with a header.

``Time`` is Unix seconds and may be fractional. The format has no users, so each session is its
own user ``s<SessionId>``; columns other than the three are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from reco.datasets.base import Event, Reader, parse_float, require, table_rows

COLUMNS = ("SessionId", "ItemId", "Time")


def read_events(path: Path) -> Iterator[Event]:
    """Stream the views in file order."""
    for line, row in table_rows(path, "\t", COLUMNS):
        session = require(path, line, "SessionId", row["SessionId"])
        yield {
            "user_id": f"s{session}",
            "item_id": require(path, line, "ItemId", row["ItemId"]),
            "type": "view",
            "timestamp": parse_float(path, line, "Time", row["Time"]),
            "session_id": session,
            "properties": {},
        }


READER = Reader("session-tsv", "session-rec SessionId/ItemId/Time tab-separated views", read_events)
