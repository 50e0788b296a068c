"""Embedded event log on SQLite: append-only, one partition, consumer offsets stored beside it.

The producer and each consumer hold their own connection (SQLite connections belong to one
thread); WAL mode lets the processor read while ingest appends. A record's offset is its
rowid minus one, so offsets start at 0 as in Kafka. Producers in the same process wake the
consumers through a condition instead of making them poll the file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from reco.events import Event, InvalidEvent
from reco.exceptions import BackendUnavailable
from reco.ports import Record

log = logging.getLogger(__name__)

PARTITION = 0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    consumer_group TEXT NOT NULL,
    record_offset INTEGER NOT NULL,
    value BLOB NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""

# The first record of each event_id and how many records carry it, in one pass that SQLite
# groups in a temporary b-tree (on disk when large) rather than a set of every id in Python.
# Values are stored as BLOBs, which SQLite's JSON functions refuse, hence the casts; a record
# that is not JSON or has no event_id is a group of its own (-rowid), left for the decoder to
# skip and log as iter_events does.
_FIRST_OF_EACH_ID = """
SELECT events.rowid, events.key, events.value, firsts.copies
FROM (
    SELECT min(rowid) AS first, count(*) AS copies
    FROM events
    GROUP BY coalesce(
        CASE WHEN json_valid(CAST(value AS TEXT))
            THEN json_extract(CAST(value AS TEXT), '$.event_id') END,
        -rowid
    )
) AS firsts
JOIN events ON events.rowid = firsts.first
ORDER BY events.rowid
"""


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class SqliteEventLog:
    """The log file plus what its producer and consumers share in this process."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        """``fsync=False`` survives a process crash; ``True`` also survives power loss."""
        self.path = path
        self._synchronous = "FULL" if fsync else "NORMAL"
        path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(path, self._synchronous) as conn:
            conn.executescript(_SCHEMA)
        self._appended = threading.Condition()

    def producer(self) -> SqliteProducer:
        return SqliteProducer(self, _connect(self.path, self._synchronous))

    def consumer(self, group: str) -> SqliteConsumer:
        return SqliteConsumer(self, _connect(self.path, self._synchronous), group)

    def iter_events(self, batch: int = 10_000) -> Iterator[tuple[Record, Event]]:
        """Every record of the log in offset order (the order events were accepted),
        decoded, on a connection of its own; undecodable records are skipped."""
        conn = _connect(self.path, self._synchronous)
        try:
            last = 0
            while True:
                rows = conn.execute(
                    "SELECT rowid, key, value FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last, batch),
                ).fetchall()
                if not rows:
                    return
                for rowid, key, value in rows:
                    record = Record(PARTITION, int(rowid) - 1, key, bytes(value))
                    try:
                        yield record, Event.from_json(record.value)
                    except InvalidEvent:
                        log.warning("events[0] offset %d undecodable, skipped", record.offset)
                last = int(rows[-1][0])
        finally:
            conn.close()

    def iter_distinct_events(self, batch: int = 10_000) -> Iterator[tuple[Record, Event, int]]:
        """Each ``event_id`` once, as its first record (the order :meth:`iter_events`
        gives), with how many records carry it: the events as the processor applied them,
        since a client retry can append the same event twice. Undecodable records are
        skipped, as there."""
        conn = _connect(self.path, self._synchronous)
        try:
            cursor = conn.execute(_FIRST_OF_EACH_ID)
            while rows := cursor.fetchmany(batch):
                for rowid, key, value, copies in rows:
                    record = Record(PARTITION, int(rowid) - 1, key, bytes(value))
                    try:
                        yield record, Event.from_json(record.value), int(copies)
                    except InvalidEvent:
                        log.warning("events[0] offset %d undecodable, skipped", record.offset)
        finally:
            conn.close()

    def notify(self) -> None:
        with self._appended:
            self._appended.notify_all()

    def wait(self, timeout_s: float) -> None:
        with self._appended:
            self._appended.wait(timeout_s)


class SqliteProducer:
    def __init__(self, log_: SqliteEventLog, conn: sqlite3.Connection) -> None:
        self._log = log_
        self._conn = conn
        self._lock = threading.Lock()

    def produce(self, events: Sequence[Event]) -> None:
        rows = [(e.user_id, e.to_json()) for e in events]
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany("INSERT INTO events(key, value) VALUES (?, ?)", rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            raise BackendUnavailable(f"event log {self._log.path}: {exc}") from exc
        self._log.notify()

    def end_offset(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()
        return int(row[0])

    def ready(self) -> bool:
        try:
            self.end_offset()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteConsumer:
    def __init__(self, log_: SqliteEventLog, conn: sqlite3.Connection, group: str) -> None:
        self._log = log_
        self._conn = conn
        self.group = group
        self._position = self._committed()

    def _committed(self) -> int:
        row = self._conn.execute(
            "SELECT next_offset FROM consumer_offsets WHERE consumer_group = ?", (self.group,)
        ).fetchone()
        return int(row[0]) if row else 0

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self._conn.execute(
                "SELECT rowid, key, value FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (self._position, max_records),
            ).fetchall()
            if rows:
                self._position = int(rows[-1][0])
                return [Record(PARTITION, int(r[0]) - 1, r[1], bytes(r[2])) for r in rows]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._log.wait(min(remaining, 0.5))

    def seek(self, offsets: Mapping[int, int]) -> None:
        self._position = offsets.get(PARTITION, 0)

    def commit(self, offsets: Mapping[int, int]) -> None:
        if PARTITION not in offsets:
            return
        self._conn.execute(
            "INSERT INTO consumer_offsets(consumer_group, next_offset) VALUES (?, ?) "
            "ON CONFLICT(consumer_group) DO UPDATE SET next_offset = excluded.next_offset",
            (self.group, offsets[PARTITION]),
        )

    def assignments(self) -> int:
        return 1  # one partition, one member: assigned once, at open

    def committed(self) -> dict[int, int]:
        return {PARTITION: self._committed()}

    def lag(self) -> dict[int, int]:
        end = self._conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()[0]
        return {PARTITION: max(0, int(end) - self._committed())}

    def dead_letter(self, record: Record, reason: str) -> None:
        log.warning(
            "dead-lettered events[%d] offset %d: %s", record.partition, record.offset, reason
        )
        self._conn.execute(
            "INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?)",
            (self.group, record.offset, record.value, reason, time.time()),
        )

    def dead_letters(self) -> list[tuple[int, str]]:
        rows = self._conn.execute(
            "SELECT record_offset, reason FROM dead_letters WHERE consumer_group = ? "
            "ORDER BY record_offset",
            (self.group,),
        ).fetchall()
        return [(int(o), str(r)) for o, r in rows]

    def close(self) -> None:
        self._conn.close()
