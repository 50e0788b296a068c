"""What the PostgreSQL adapters promise beyond the shared contracts, against a real server:
migrations that any number of processes can run at start, an archive whose replays add
nothing, ordered streaming for rebuilds, and the catalog cache's staleness bound."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from reco.adapters.postgres_archive import PostgresArchive
from reco.adapters.postgres_catalog import PostgresCatalog
from reco.adapters.postgres_schema import MIGRATION_LOCK, MIGRATIONS, Migration, migrate
from reco.catalog import ItemIn
from reco.events import Event
from reco.exceptions import BackendUnavailable
from reco.local.servers import PostgresServer
from reco.ports import Record
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

LATEST = [m.version for m in MIGRATIONS]


def _event(n: int, *, ts: float, partition: int = 0, **fields: Any) -> tuple[Record, Event]:
    event = Event(
        event_id=fields.pop("event_id", f"e{partition}-{n}"),
        user_id=fields.pop("user_id", f"u{n % 7}"),
        item_id=fields.pop("item_id", f"i{n % 11}"),
        type=fields.pop("type", "view"),
        timestamp=ts,
        received_at=ts + 0.25,
        **fields,
    )
    return Record(partition=partition, offset=n, key=event.user_id, value=event.to_json()), event


@pytest.fixture
def archive(pg_database: str) -> Iterator[PostgresArchive]:
    arch = PostgresArchive.from_url(pg_database)
    yield arch
    arch.close()


def _versions(conn: psycopg.Connection[Any]) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


# -- migrations ---------------------------------------------------------------------------


def test_migrations_apply_once(pg_conn: psycopg.Connection[Any]) -> None:
    assert migrate(pg_conn) == LATEST
    assert migrate(pg_conn) == [], "a second start finds nothing to do"
    assert _versions(pg_conn) == LATEST
    tables = {
        r[0]
        for r in pg_conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    }
    assert tables == {"schema_migrations", "items", "events", "model_versions"}


def test_migrations_from_processes_starting_together(
    pg_database: str, pg_conn: psycopg.Connection[Any]
) -> None:
    """Two migrators queue on the advisory lock. They may take turns (one applies 1 and 2,
    the other 3), but every version is applied exactly once and neither fails."""
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(pg_database, autocommit=True) as conn:
                results.append(migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    # Hold the lock so that both threads are surely waiting on it before either proceeds.
    with pg_conn.transaction():
        pg_conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(
            lambda: (
                pg_conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()
                == (2,)
            )
        )
    for t in threads:
        t.join(30)
    assert not errors
    assert len(results) == 2
    assert sorted(v for applied in results for v in applied) == LATEST
    assert _versions(pg_conn) == LATEST


def test_failed_migration_leaves_no_trace(pg_conn: psycopg.Connection[Any]) -> None:
    broken = Migration(len(MIGRATIONS) + 1, "broken", "CREATE TABLE half (x int); SELECT 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(pg_conn, (*MIGRATIONS, broken))
    assert _versions(pg_conn) == LATEST, "the earlier migrations are kept"
    assert pg_conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


# -- archive ------------------------------------------------------------------------------


def test_archive_copies_and_a_replayed_batch_adds_nothing(
    archive: PostgresArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    real_copy = psycopg.Cursor.copy

    def spy(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(statement))
        return real_copy(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    batch = [_event(n, ts=1_700_000_000 + n) for n in range(500)]

    assert archive.write(batch) == 500
    assert statements
    assert statements[0].startswith("COPY ")
    assert archive.write(batch) == 0, "a replay after a crash before the offset commit"
    overlapping = batch[400:] + [_event(n, ts=1_700_000_000 + n) for n in range(500, 600)]
    assert archive.write(overlapping) == 100
    assert archive.count() == 600


def test_archive_round_trip_keeps_every_field(archive: PostgresArchive) -> None:
    record, event = _event(
        0,
        ts=1_767_225_600.123456,
        session_id="s1",
        properties={"price": 9.5, "tags": ["a", "ü"], "nested": {"k": None}},
    )
    archive.write([(record, event)])
    [(stored_record, stored)] = list(archive.iter_events())
    assert (stored_record.partition, stored_record.offset) == (0, 0)
    assert stored == event


def test_archive_replaces_nul_that_postgres_cannot_store(archive: PostgresArchive) -> None:
    """Without this, one such event fails its batch on every retry and stalls the archive."""
    batch = [
        _event(0, ts=1.0, properties={"q": ["a\x00b"]}),
        _event(1, ts=2.0),
        _event(2, ts=3.0, session_id="s\x00"),
    ]
    assert archive.write(batch) == 3
    stored = [e for _, e in archive.iter_events()]
    assert stored[0].properties == {"q": ["a\ufffdb"]}
    assert stored[1] == batch[1][1]
    assert stored[2].session_id == "s\ufffd"


def test_iter_events_streams_in_time_then_log_order(archive: PostgresArchive) -> None:
    # Out of order across partitions, with ties on ts broken by partition, then offset.
    archive.write([_event(n, ts=100.0 - n, partition=1) for n in range(5)])
    archive.write([_event(n, ts=100.0 - n, partition=0) for n in range(5)])
    archive.write([_event(n, ts=50.0, partition=2) for n in range(5, 10)])

    got = [(r.partition, r.offset) for r, _ in archive.iter_events(batch=3)]

    expected = sorted(
        [(100.0 - n, p, n) for p in (0, 1) for n in range(5)] + [(50.0, 2, n) for n in range(5, 10)]
    )
    assert got == [(p, n) for _, p, n in expected]


def test_iter_events_does_not_hold_up_writes(archive: PostgresArchive) -> None:
    archive.write([_event(n, ts=float(n)) for n in range(10)])
    stream = archive.iter_events(batch=2)
    first = [next(stream) for _ in range(3)]
    assert archive.write([_event(n, ts=float(n)) for n in range(10, 15)]) == 5
    rest = list(stream)
    assert len(first) + len(rest) == 10, "one snapshot: the later batch is not in this read"
    assert archive.count() == 15


# -- catalog ------------------------------------------------------------------------------


def _catalogs(url: str, ttl: float) -> tuple[PostgresCatalog, PostgresCatalog]:
    """Two api replicas on one database."""
    return (
        PostgresCatalog.from_url(url, cache_ttl_s=ttl),
        PostgresCatalog.from_url(url, cache_ttl_s=ttl),
    )


def _price(catalog: PostgresCatalog, item_id: str) -> float | None:
    item = catalog.get(item_id)
    return None if item is None else item.price


def test_catalog_change_from_another_replica_is_seen_within_the_ttl(pg_database: str) -> None:
    ttl = 1.0
    here, there = _catalogs(pg_database, ttl)
    try:
        here.upsert([ItemIn(item_id="a", price=10.0)])
        assert here.get("b") is None  # cached as absent
        there.upsert([ItemIn(item_id="a", price=12.0), ItemIn(item_id="b", title="B")])
        committed = time.monotonic()
        assert _price(there, "a") == 12.0, "the writer sees its own change at once"

        assert _price(here, "a") == 10.0, "stale until the entry expires"
        assert here.get("b") is None, "an absent item too"
        wait_until(
            lambda: here.get("b") is not None and _price(here, "a") == 12.0, timeout_s=ttl + 2
        )
        assert time.monotonic() - committed <= ttl + 0.25, "the documented staleness bound"
    finally:
        here.close()
        there.close()


def test_catalog_concurrent_upserts_of_different_fields_lose_nothing(pg_database: str) -> None:
    """Each replica sets one field of the same item; the other's field is never reverted."""
    one, two = _catalogs(pg_database, ttl=30.0)
    one.upsert([ItemIn(item_id="x", title="t-1", in_stock=True)])
    rounds = 100

    def titles() -> None:
        for n in range(rounds):
            one.upsert([ItemIn(item_id="x", title=f"t{n}")])

    def stock() -> None:
        for n in range(rounds):
            two.upsert([ItemIn(item_id="x", in_stock=n % 2 == 0)])

    threads = [threading.Thread(target=titles), threading.Thread(target=stock)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    fresh = PostgresCatalog.from_url(pg_database)
    try:
        item = fresh.get("x")
        assert item is not None
        assert (item.title, item.in_stock) == (f"t{rounds - 1}", (rounds - 1) % 2 == 0)
    finally:
        for cat in (one, two, fresh):
            cat.close()


def test_catalog_in_stock_left_out_keeps_false(pg_database: str) -> None:
    cat = PostgresCatalog.from_url(pg_database, cache_size=0)
    try:
        cat.upsert([ItemIn(item_id="a", in_stock=False), ItemIn(item_id="b")])
        cat.upsert([ItemIn(item_id="a", title="A"), ItemIn(item_id="b", in_stock=False)])
        stored = cat.get_many(["a", "b"])
        assert (stored["a"].title, stored["a"].in_stock) == ("A", False)
        assert stored["b"].in_stock is False
        assert cat.upsert([ItemIn(item_id="a", in_stock=True)])[0].in_stock is True
    finally:
        cat.close()


def test_catalog_created_at_round_trips_with_its_zone(pg_database: str) -> None:
    aware = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    cat = PostgresCatalog.from_url(pg_database, cache_size=0)
    try:
        cat.upsert([ItemIn(item_id="a", created_at=aware)])
        item = cat.get("a")
        assert item is not None
        assert item.created_at == aware.timestamp()
    finally:
        cat.close()


def test_catalog_outage_is_reported_and_survived(
    pg_database: str, postgres_server: PostgresServer
) -> None:
    cat = PostgresCatalog.from_url(pg_database)
    try:
        cat.upsert([ItemIn(item_id="cached", title="C")])
        postgres_server.stop()
        assert not cat.ready()
        with pytest.raises(BackendUnavailable):
            cat.get("not-cached")
        assert cat.get("cached") is not None, "cached items are still served"
        postgres_server.start()
        assert cat.ready(), "reconnects by itself"
        assert cat.get("not-cached") is None
    finally:
        postgres_server.start()
        cat.close()
