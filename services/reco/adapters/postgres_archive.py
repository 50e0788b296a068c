"""The events archive on PostgreSQL: every event of the log, kept for rebuilds and training.

The archiver consumes the event log at least once, so ``write`` must be safe to repeat:
rows are keyed by their log position and a replayed batch inserts nothing (see the
``events`` migration in ``postgres_schema``). Only then does the archiver commit its
offsets, so a crash in between costs a replay, never a lost or doubled event.

Timestamps are stored as ``timestamptz``, with microsecond precision: an event read back
has its epoch seconds rounded to the microsecond.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, LiteralString, Self

import orjson
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_dumps, set_json_loads

from reco.adapters.postgres_conn import Connection, SharedConnection
from reco.adapters.postgres_schema import connect, redacted_url
from reco.events import Event
from reco.exceptions import BackendUnavailable
from reco.ports import Record

logger = logging.getLogger(__name__)


_COLUMNS: Final[LiteralString] = (
    "event_id, user_id, item_id, type, ts, received_at, session_id, properties,"
    " source_partition, source_offset"
)
_TYPES: Final = (
    "text", "text", "text", "text", "timestamptz", "timestamptz", "text", "jsonb", "int4", "int8"
)  # fmt: skip

# COPY is the fast way in (no per-row statement, binary rows), but it cannot skip rows that
# are already there: one duplicate key aborts the whole COPY. So a batch is copied into a
# staging table without constraints and moved with INSERT ... SELECT ... ON CONFLICT DO
# NOTHING, which skips exactly the records archived before. The staging table is created
# once per connection rather than per batch (creating tables churns the system catalogs);
# ON COMMIT DELETE ROWS empties it at the end of each batch's transaction.
_STAGING: Final[LiteralString] = "events_staging"
_CREATE_STAGING: Final[LiteralString] = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE events INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"
)
_COPY: Final[LiteralString] = f"COPY {_STAGING} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_MOVE: Final[LiteralString] = (
    f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGING} ON CONFLICT DO NOTHING"
)
_STREAM: Final[LiteralString] = (
    f"SELECT {_COLUMNS} FROM events ORDER BY ts, source_partition, source_offset"
)
# The archive keeps every log record, so an event a client re-sent (a retry that reached
# Kafka twice) is there twice, at two log positions; the processor applies it once, and
# training must count it once too. DISTINCT ON keeps each event_id's first copy by log
# position; the window, evaluated before it, counts the copies; the outer ORDER BY restores
# _STREAM's order. Both sorts run in the server, which spills them to disk on a large
# archive, instead of a set of every event_id in the job's memory.
_STREAM_DISTINCT: Final[LiteralString] = (
    f"SELECT {_COLUMNS}, copies FROM ("
    f" SELECT DISTINCT ON (event_id) {_COLUMNS},"
    " count(*) OVER (PARTITION BY event_id) AS copies"
    " FROM events ORDER BY event_id, source_partition, source_offset"
    ") AS firsts ORDER BY ts, source_partition, source_offset"
)


def _epoch_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters replaced: PostgreSQL text and jsonb cannot hold them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def _row(record: Record, event: Event) -> tuple[Any, ...]:
    properties = event.properties
    return (
        event.event_id,
        event.user_id,
        event.item_id,
        event.type,
        _epoch_to_datetime(event.timestamp),
        _epoch_to_datetime(event.received_at),
        event.session_id,
        properties if isinstance(properties, dict) else dict(properties),
        record.partition,
        record.offset,
    )


def _to_event(row: TupleRow) -> tuple[Record, Event]:
    """A stored row as the log record position and the event; the record has no payload."""
    event_id, user_id, item_id, type_, ts, received_at, session_id, props, part, offset = row
    event = Event(
        event_id=event_id,
        user_id=user_id,
        item_id=item_id,
        type=type_,
        timestamp=ts.timestamp(),
        received_at=received_at.timestamp(),
        session_id=session_id,
        properties=props,
    )
    return Record(partition=part, offset=offset, key=None, value=b""), event


class PostgresArchive:
    """Append-only archive of the event log; ``write`` is idempotent per log position."""

    def __init__(self, conn: SharedConnection, *, where: str) -> None:
        self._db = conn
        self._where = where

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float | None = None) -> Self:
        """Connect to ``url`` (``postgresql://...``), migrating the schema if needed;
        ``timeout_s`` bounds each statement (see ``connect``)."""
        where = redacted_url(url)
        conn = SharedConnection(
            lambda: connect(url, application_name="reco-archiver", timeout_s=timeout_s),
            what="archive",
            where=where,
            on_open=_prepare,
        )
        return cls(conn, where=where)

    def write(self, records: Sequence[tuple[Record, Event]]) -> int:
        """Archive a batch in one transaction; return how many events were new.

        All of the batch is stored or none of it. Records archived before (a replay after
        a crash, or an overlapping batch) are skipped, so calling this again with the same
        batch is harmless and returns 0.
        """
        if not records:
            return 0
        rows = [_row(record, event) for record, event in records]
        try:
            inserted = self._db.run(lambda conn: self._copy(conn, rows))
        except psycopg.DataError:
            # A NUL character (which ingest refuses in identifiers but not in properties)
            # would fail this batch on every retry and stall the archive, so it is replaced.
            # Looked for only after a failure: scanning every event would cost more than
            # the rare retry.
            clean = [tuple(_without_nul(v) for v in row) for row in rows]
            changed = [
                (row[-2], row[-1]) for row, new in zip(rows, clean, strict=True) if row != new
            ]
            if not changed:
                raise
            logger.warning("archive: NUL characters replaced in events at %s", changed[:10])
            inserted = self._db.run(lambda conn: self._copy(conn, clean))
        first, last = records[0][0], records[-1][0]
        # Skipped records mean a replay (the archiver restarted before committing offsets):
        # worth a line at info, unlike the steady state.
        logger.log(
            logging.DEBUG if inserted == len(records) else logging.INFO,
            "archived %d of %d events (the rest were archived before), "
            "[%d] offset %d .. [%d] offset %d",
            inserted,
            len(records),
            first.partition,
            first.offset,
            last.partition,
            last.offset,
        )
        return inserted

    def count(self) -> int:
        """How many events are archived (an exact count: it scans, so not for hot paths)."""
        row = self._db.run(lambda conn: conn.execute("SELECT count(*) FROM events").fetchone())
        return int(row[0]) if row else 0

    def iter_events(self, batch: int = 10_000) -> Iterator[tuple[Record, Event]]:
        """Every archived event in (ts, partition, offset) order, ``batch`` rows at a time.

        A server-side cursor streams the rows, so memory stays at one batch whatever the
        archive's size. It runs on a connection of its own, in one read-only transaction
        (one snapshot: events archived meanwhile are not included), so that ``write`` can
        go on while a long rebuild or training read is under way. Close the iterator (or
        exhaust it) to end that transaction.
        """
        for row in self._stream(_STREAM, batch):
            yield _to_event(row)

    def iter_distinct_events(self, batch: int = 10_000) -> Iterator[tuple[Record, Event, int]]:
        """Each ``event_id`` once, as its first copy by log position, in the order of
        :meth:`iter_events`, with how many copies the archive holds (2 for a client retry
        that was archived twice). Streamed like :meth:`iter_events`, once the server has
        sorted the archive."""
        for row in self._stream(_STREAM_DISTINCT, batch):
            record, event = _to_event(row[:-1])
            yield record, event, int(row[-1])

    def _stream(self, query: LiteralString, batch: int) -> Iterator[TupleRow]:
        conn = self._db.connect()
        try:
            conn.read_only = True
            set_json_loads(orjson.loads, context=conn)
            with (
                conn.transaction(),
                conn.cursor(name=f"reco_events_{uuid.uuid4().hex[:8]}") as cur,
            ):
                cur.itersize = batch
                cur.execute(query)
                yield from cur
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(f"archive at {self._where}: {exc}") from exc
        finally:
            conn.close()

    @staticmethod
    def _copy(conn: psycopg.Connection[TupleRow], rows: list[tuple[Any, ...]]) -> int:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.set_types(_TYPES)
                for row in rows:
                    copy.write_row(row)
            cur.execute(_MOVE)
            return cur.rowcount

    def ready(self) -> bool:
        return self._db.ready()

    def close(self) -> None:
        self._db.close()


def _prepare(conn: Connection) -> None:
    """Each new connection of the writer: orjson for jsonb (several times faster than
    json.dumps on every event's properties) and the staging table COPY fills."""
    set_json_dumps(orjson.dumps, context=conn)
    conn.execute(_CREATE_STAGING)
