"""Taobao UserBehavior (Alibaba Tianchi): ``user,item,category,behavior,unix_ts`` without a header.

Behaviours map to engine event types; ``fav`` stays ``fav``, one of the engine's default
types (weight 3, like a click). The dataset has no sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from reco.datasets.base import Event, Item, Reader, parse_int, require, split_rows
from reco.datasets.exceptions import DatasetFormatError

BEHAVIOURS = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "purchase"}


def read_events(path: Path) -> Iterator[Event]:
    """Stream the behaviours in file order (grouped by user)."""
    for line, (user, item, category, behaviour, timestamp) in split_rows(path, ",", 5):
        event_type = BEHAVIOURS.get(behaviour)
        if event_type is None:
            known = ", ".join(BEHAVIOURS)
            raise DatasetFormatError(path, line, f"behavior {behaviour!r} is not one of {known}")
        yield {
            "user_id": require(path, line, "user_id", user),
            "item_id": require(path, line, "item_id", item),
            "type": event_type,
            "timestamp": float(parse_int(path, line, "timestamp", timestamp)),
            "properties": {"category": require(path, line, "category_id", category)},
        }


def read_items(path: Path) -> Iterator[Item]:
    """Stream each item once, with the category of its first row."""
    seen: set[str] = set()
    for event in read_events(path):
        item_id = event["item_id"]
        if item_id not in seen:
            seen.add(item_id)
            category = event["properties"]["category"]
            yield {"item_id": item_id, "category": category, "in_stock": True}


READER = Reader(
    "taobao", "Taobao UserBehavior.csv (pv / cart / fav / buy)", read_events, read_items
)
