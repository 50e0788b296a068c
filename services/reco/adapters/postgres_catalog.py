"""The catalog on PostgreSQL, shared by every api replica, with a per-process read cache.

The api reads the attributes of ~100 candidates per request (~500 for the ranker's catalog
features), far too many for a round trip each, so reads go through a bounded TTL cache
(``reco.adapters.expiring``; absent items are cached too). An upsert updates the cache of the
process that made it, and only that one: the other replicas keep serving what they cached.

Staleness bound: a change committed by another process (another replica, a batch job, psql)
is seen here at most ``cache_ttl_s`` after it committed, plus the duration of a read that was
already in flight. That covers new items too: an item looked up before it existed is cached
as absent for up to ``cache_ttl_s``. A change made through this instance is seen by this
instance at once. Entries are not refreshed by reads: the TTL runs from when an entry was
fetched, so a hot item is re-read every ``cache_ttl_s`` and the bound holds for it too.

One connection serves the instance, behind a lock. Reads are cache misses only, so the
database sees a small fraction of the request rate; a pool would only pay off when misses
queue up behind each other (e.g. ``cache_size`` far below the catalog's working set).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, LiteralString, Self

import psycopg
from psycopg.rows import TupleRow

from reco.adapters.expiring import ExpiringCache
from reco.adapters.postgres_conn import SharedConnection
from reco.adapters.postgres_schema import connect, redacted_url
from reco.catalog import Item, ItemIn

logger = logging.getLogger(__name__)

_COLUMNS: Final = "item_id, title, category, price, in_stock, created_at"

# One statement upserts the whole batch: unnest() turns the column arrays into rows, so the
# batch costs one round trip whatever its size. COALESCE(EXCLUDED.col, cur.col) keeps the
# stored value of a field the update leaves out; ``cur`` is the row version the conflict
# locked, so a concurrent upsert of other fields of the same item is never overwritten.
# in_stock cannot follow that pattern: the proposed row must satisfy NOT NULL before the
# conflict is even detected, so a left-out in_stock has to be sent as true (the default for
# a new item) and told apart from an explicit true by %(keep_stock)s. The caller sends the
# items that set in_stock and the ones that do not as two executions of this statement.
_UPSERT: Final[LiteralString] = """
INSERT INTO items AS cur (item_id, title, category, price, in_stock, created_at)
SELECT b.item_id, b.title, b.category, b.price, coalesce(b.in_stock, true), b.created_at
FROM unnest(
    %(item_id)s::text[], %(title)s::text[], %(category)s::text[],
    %(price)s::float8[], %(in_stock)s::bool[], %(created_at)s::timestamptz[]
) AS b(item_id, title, category, price, in_stock, created_at)
ON CONFLICT (item_id) DO UPDATE SET
    title = coalesce(EXCLUDED.title, cur.title),
    category = coalesce(EXCLUDED.category, cur.category),
    price = coalesce(EXCLUDED.price, cur.price),
    in_stock = CASE WHEN %(keep_stock)s THEN cur.in_stock ELSE EXCLUDED.in_stock END,
    created_at = coalesce(EXCLUDED.created_at, cur.created_at),
    updated_at = now()
RETURNING item_id, title, category, price, in_stock, created_at
"""

_FIELDS: Final = ("title", "category", "price", "in_stock", "created_at")


def _row_to_item(row: TupleRow) -> Item:
    item_id, title, category, price, in_stock, created_at = row
    return Item(
        item_id=item_id,
        title=title,
        category=category,
        price=price,
        in_stock=in_stock,
        created_at=None if created_at is None else created_at.timestamp(),
    )


def _merge_batch(items: Sequence[ItemIn]) -> dict[str, dict[str, Any]]:
    """One update per item, field by field, the later update winning where both set a field.

    A single INSERT ... ON CONFLICT DO UPDATE may not touch the same row twice, so an item
    that appears several times in a batch must be folded first, as if applied in order.
    """
    merged: dict[str, dict[str, Any]] = {}
    for update in items:
        fields = merged.setdefault(update.item_id, dict.fromkeys(_FIELDS))
        for name in _FIELDS:
            value = getattr(update, name)
            if value is not None:
                fields[name] = value
        if update.created_at is not None:
            # Through its epoch seconds, as Item.merged() does: a naive datetime then means
            # this process's local time in every adapter, not the database session's zone.
            fields["created_at"] = datetime.fromtimestamp(update.created_at.timestamp(), UTC)
    return merged


class PostgresCatalog:
    """The ``Catalog`` of the stack deployment; see the module docstring for its staleness."""

    def __init__(
        self,
        conn: SharedConnection,
        *,
        cache_size: int = 100_000,
        cache_ttl_s: float = 30.0,
    ) -> None:
        self._db = conn
        # The cache has its own lock (its reads take none), so that cache hits are served
        # while another thread waits on the database. cache_size 0 or cache_ttl_s 0 turns
        # it off: every read goes to the database. None: known to be absent.
        self._cache: ExpiringCache[str, Item | None] = ExpiringCache(cache_size, cache_ttl_s)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cache_size: int = 100_000,
        cache_ttl_s: float = 30.0,
        timeout_s: float | None = None,
    ) -> Self:
        """Connect to ``url`` (``postgresql://...``), migrating the schema if needed;
        ``timeout_s`` bounds each statement (see ``connect``)."""
        conn = SharedConnection(
            lambda: connect(url, application_name="reco-catalog", timeout_s=timeout_s),
            what="catalog",
            where=redacted_url(url),
        )
        return cls(conn, cache_size=cache_size, cache_ttl_s=cache_ttl_s)

    def upsert(self, items: Sequence[ItemIn]) -> list[Item]:
        """Create or update ``items`` in one transaction; return them as now stored."""
        merged = _merge_batch(items)
        if not merged:
            return []
        groups: list[tuple[bool, list[str]]] = [
            (keep, [i for i, f in merged.items() if (f["in_stock"] is None) == keep])
            for keep in (False, True)
        ]
        params = [
            {
                "item_id": ids,
                **{name: [merged[i][name] for i in ids] for name in _FIELDS},
                "keep_stock": keep,
            }
            for keep, ids in groups
            if ids
        ]

        def write(conn: psycopg.Connection[TupleRow]) -> dict[str, Item]:
            stored: dict[str, Item] = {}
            with conn.transaction(), conn.cursor() as cur:
                for p in params:
                    cur.execute(_UPSERT, p)
                    stored.update((row[0], _row_to_item(row)) for row in cur.fetchall())
            return stored

        stored = self._db.run(write)
        self._cache.put_many(stored)
        logger.debug("catalog upserted %d items", len(stored))
        return [stored[i] for i in merged]

    def get(self, item_id: str) -> Item | None:
        return self.get_many([item_id]).get(item_id)

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """The known items among ``item_ids``: cached ones, the rest in one query."""
        wanted = dict.fromkeys(item_ids)
        cached = self._cache.get_many(wanted)
        found = {i: item for i, item in cached.items() if item is not None}
        missing = [i for i in wanted if i not in cached]
        if not missing:
            return found

        def fetch(conn: psycopg.Connection[TupleRow]) -> dict[str, Item]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE item_id = ANY(%s)", (missing,)
            ).fetchall()
            return {row[0]: _row_to_item(row) for row in rows}

        fetched = self._db.run(fetch)
        # An upsert of this process may have cached a newer value while we read; what we
        # fetched is at best as new, so it must not replace that one.
        self._cache.put_many({i: fetched.get(i) for i in missing}, replace=False)
        found.update(fetched)
        return found

    def count(self) -> int:
        """How many items the catalog holds (``reco dev`` seeds demo items into an empty one)."""
        row = self._db.run(lambda conn: conn.execute("SELECT count(*) FROM items").fetchone())
        return int(row[0]) if row else 0

    def ready(self) -> bool:
        """The database answers; reconnects first if the connection was lost."""
        return self._db.ready()

    def close(self) -> None:
        self._db.close()
