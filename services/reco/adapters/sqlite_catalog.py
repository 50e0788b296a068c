"""Embedded catalog on SQLite, with an in-process read cache.

The api reads the attributes of ~100 candidates per request, so reads go through a bounded
cache (absent items are cached too); an upsert in this process updates it, which keeps it
exact in embedded mode where this process is the only writer.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

from reco.catalog import Item, ItemIn

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    title TEXT,
    category TEXT,
    price REAL,
    in_stock INTEGER NOT NULL DEFAULT 1,
    created_at REAL
) WITHOUT ROWID;
"""
_COLUMNS = "item_id, title, category, price, in_stock, created_at"
# SQLite's default limit of host parameters in one statement is 32766; stay well below.
_CHUNK = 500


def _row_to_item(row: tuple[object, ...]) -> Item:
    item_id, title, category, price, in_stock, created_at = row
    return Item(
        item_id=str(item_id),
        title=None if title is None else str(title),
        category=None if category is None else str(category),
        price=None if price is None else float(str(price)),
        in_stock=bool(in_stock),
        created_at=None if created_at is None else float(str(created_at)),
    )


class SqliteCatalog:
    def __init__(self, path: Path, *, cache_size: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Item | None] = OrderedDict()
        self._cache_size = cache_size

    def upsert(self, items: Sequence[ItemIn]) -> list[Item]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current = self._fetch([i.item_id for i in items])
                merged: dict[str, Item] = {}
                for update in items:
                    base = merged.get(update.item_id) or current.get(update.item_id)
                    merged[update.item_id] = (base or Item(update.item_id)).merged(update)
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO items({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (i.item_id, i.title, i.category, i.price, int(i.in_stock), i.created_at)
                        for i in merged.values()
                    ],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            for item in merged.values():
                self._remember(item.item_id, item)
        return list(merged.values())

    def get(self, item_id: str) -> Item | None:
        return self.get_many([item_id]).get(item_id)

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        found: dict[str, Item] = {}
        missing: list[str] = []
        with self._lock:
            for item_id in item_ids:
                if item_id in self._cache:
                    cached = self._cache[item_id]
                    if cached is not None:
                        found[item_id] = cached
                else:
                    missing.append(item_id)
            if missing:
                fetched = self._fetch(missing)
                for item_id in missing:
                    self._remember(item_id, fetched.get(item_id))
                found.update(fetched)
        return found

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def _fetch(self, item_ids: list[str]) -> dict[str, Item]:
        out: dict[str, Item] = {}
        for start in range(0, len(item_ids), _CHUNK):
            chunk = item_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE item_id IN ({marks})", chunk
            ).fetchall()
            out.update((str(r[0]), _row_to_item(r)) for r in rows)
        return out

    def _remember(self, item_id: str, item: Item | None) -> None:
        self._cache[item_id] = item
        self._cache.move_to_end(item_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def ready(self) -> bool:
        try:
            with self._lock:
                self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()
