"""One PostgreSQL connection shared by a component's threads, reopened when it broke.

The catalog, the archive and the model store each hold one autocommit connection (from
``postgres_schema.connect``, so the schema is migrated first). A lock makes its
transactions the caller's alone. When the database restarts the connection breaks: the
failed call raises ``BackendUnavailable`` and the next one opens a new connection. Work is
never retried here: whether a write whose commit was cut off was applied is for the caller
to decide (every writer of ours is idempotent and retries whole).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg.rows import TupleRow

from reco.exceptions import BackendTimeout, BackendUnavailable

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Connection = psycopg.Connection[TupleRow]


class SharedConnection:
    def __init__(
        self,
        connect: Callable[[], Connection],
        *,
        what: str,
        where: str,
        on_open: Callable[[Connection], None] | None = None,
        eager: bool = True,
    ) -> None:
        """``what`` names the component in errors ("catalog"), ``where`` the database
        without its password; ``on_open`` prepares each new connection (a temp table);
        ``eager`` connects now, so that a wrong URL fails at start rather than at first use."""
        self.connect = connect
        self._what = what
        self._where = where
        self._on_open = on_open
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._closed = False
        if eager:
            self._conn = self._open()

    def run(self, work: Callable[[Connection], _T]) -> _T:
        """``work`` on the connection, opening a new one first if the last one broke."""
        with self._lock:
            if self._closed:
                raise BackendUnavailable(f"the {self._what} is closed")
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._open()
                return work(self._conn)
            except psycopg.errors.QueryCanceled as exc:
                # statement_timeout: the connection is fine, the statement was cut off.
                raise BackendTimeout(
                    "postgres", self._what, f"{self._what} at {self._where}: {exc}"
                ) from exc
            except psycopg.OperationalError as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn.close()
                    self._conn = None
                raise BackendUnavailable(f"{self._what} at {self._where}: {exc}") from exc

    def ready(self) -> bool:
        """The database answers; reconnects first if the connection was lost."""
        try:
            self.run(lambda conn: conn.execute("SELECT 1").fetchone())
        except BackendUnavailable as exc:
            logger.warning("%s not ready: %s", self._what, exc)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _open(self) -> Connection:
        conn = self.connect()
        if self._on_open is not None:
            try:
                self._on_open(conn)
            except BaseException:
                conn.close()
                raise
        return conn
