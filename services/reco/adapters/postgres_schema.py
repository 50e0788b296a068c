"""The PostgreSQL schema of the engine, as ordered migrations applied at start.

Every process that opens the database (api replicas, the archiver, the training job) runs
``migrate()`` first, so there is no separate migration step to forget in a deployment. When
several of them start together, a transaction-scoped advisory lock lets one apply each
migration while the others wait and then find it recorded in ``schema_migrations``. The lock
is released by the commit or rollback itself, so a process killed in the middle never leaves
it held.

A migration is never edited once released: a database that recorded its version would not
run it again. Change the schema by appending a migration.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final, LiteralString

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from reco.exceptions import BackendUnavailable

logger = logging.getLogger(__name__)

MIGRATION_LOCK: Final = 0x7265636F_6D696772
"""Advisory lock key shared by every process that migrates ("recomigr" in ASCII). Advisory
locks are database-wide, so any other application using this number on the same database
would serialise with our migrations (harmless) but must not hold it for long."""

CONNECT_TIMEOUT_S: Final = 5
"""A database that does not answer within this is reported unavailable rather than letting
an api request or the archiver hang on the TCP connect."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: LiteralString


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "catalog items",
        """
        CREATE TABLE items (
            item_id text PRIMARY KEY,
            title text,
            category text,
            price double precision CHECK (price >= 0),
            in_stock boolean NOT NULL DEFAULT true,
            created_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    Migration(
        2,
        "events archive",
        # The key is the record's position in the event log, not event_id: the archiver
        # consumes at least once, and after a crash between its insert and its offset commit
        # it reads the same records again, at the same (partition, offset). Conflicts on that
        # key are exactly the replayed records, so ON CONFLICT DO NOTHING makes the replay a
        # no-op. event_id would not do: it is chosen by clients, two log records may share one
        # (a client retry), and the archive keeps the log as it was, duplicates included, so
        # that what reads it (reco train) sees the log the processor saw and drops the same
        # duplicates (each event_id once).
        # (ts, source_partition, source_offset) is the order iter_events() streams in; with an
        # index on it the server-side cursor starts returning rows at once instead of sorting
        # the whole archive first.
        """
        CREATE TABLE events (
            event_id text NOT NULL,
            user_id text NOT NULL,
            item_id text NOT NULL,
            type text NOT NULL,
            ts timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            session_id text,
            properties jsonb NOT NULL DEFAULT '{}',
            source_partition integer NOT NULL,
            source_offset bigint NOT NULL,
            PRIMARY KEY (source_partition, source_offset)
        );
        CREATE INDEX events_user_ts ON events (user_id, ts);
        CREATE INDEX events_item_ts ON events (item_id, ts);
        CREATE INDEX events_ts_position ON events (ts, source_partition, source_offset);
        """,
    ),
    Migration(
        3,
        "model versions",
        """
        CREATE TABLE model_versions (
            version serial PRIMARY KEY,
            kind text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            path text NOT NULL,
            metrics jsonb NOT NULL DEFAULT '{}'
        );
        """,
    ),
    Migration(
        4,
        "model artifacts stored with their version",
        # The artifact lives in the row rather than at a path: the training job (a CronJob)
        # and the api replicas share the database and nothing else, and a row is written or
        # not, never half. A model of 100k items x 64 dimensions is about 65 MB (vectors and
        # index); bytea takes up to 1 GB. `path` stays for artifacts kept elsewhere.
        """
        ALTER TABLE model_versions
            ALTER COLUMN path DROP NOT NULL,
            ADD COLUMN params jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN artifact bytea,
            ADD COLUMN size_bytes bigint NOT NULL DEFAULT 0;
        CREATE INDEX model_versions_kind ON model_versions (kind, version DESC);
        """,
    ),
)

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrate(
    conn: psycopg.Connection[TupleRow],
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> list[int]:
    """Apply the migrations this database lacks, in order; return the versions applied.

    Each migration runs in its own transaction together with its ``schema_migrations`` row,
    so a failure leaves the database at the previous version, never half-way. A pending
    version is looked up again under the lock: another process may have applied it while
    this one waited. The bookkeeping table is created under the same lock because two
    concurrent ``CREATE TABLE IF NOT EXISTS`` can still collide on the catalog's unique
    indexes.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_BOOKKEEPING)
        done = _applied_versions(conn)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            if migration.version in _applied_versions(conn):
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
            )
        logger.info("schema migration %d applied: %s", migration.version, migration.description)
        applied.append(migration.version)
    _warn_if_ahead(conn, migrations)
    return applied


def _applied_versions(conn: psycopg.Connection[TupleRow]) -> set[int]:
    return {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}


def _warn_if_ahead(conn: psycopg.Connection[TupleRow], migrations: tuple[Migration, ...]) -> None:
    """A newer release migrated this database. Expected for a while during a rolling update;
    it only works because migrations add and never remove what older code uses."""
    known = max((m.version for m in migrations), default=0)
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    newest = row[0] if row else None
    if isinstance(newest, int) and newest > known:
        logger.warning(
            "database schema is at version %d, newer than this release's %d", newest, known
        )


def connect(
    url: str, *, application_name: str, timeout_s: float | None = None
) -> psycopg.Connection[TupleRow]:
    """An autocommit connection to a migrated database.

    Autocommit, because a plain read must not leave the session "idle in transaction"
    (which holds back vacuum); writes that need a transaction open one explicitly.
    ``application_name`` shows in ``pg_stat_activity`` which role holds a connection.
    ``timeout_s`` bounds the connection attempt and, as the server's
    ``statement_timeout``, every statement; ``None`` leaves statements unbounded (a
    training run reading the whole archive).
    """
    options = str(conninfo_to_dict(url).get("options") or "")
    if timeout_s is not None:
        options += f" -c statement_timeout={max(1, round(timeout_s * 1000))}"
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            # libpq takes whole seconds and treats 1 as 2.
            connect_timeout=max(2, math.ceil(timeout_s or CONNECT_TIMEOUT_S)),
            application_name=application_name,
            options=options.strip() or None,
        )
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(f"PostgreSQL at {redacted_url(url)}: {exc}") from exc
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def redacted_url(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable url>"
    host = info.get("host", "localhost")
    return f"{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"
