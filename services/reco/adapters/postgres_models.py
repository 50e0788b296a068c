"""Model versions on PostgreSQL (the ``model_versions`` table): the training job publishes,
every api replica polls ``latest`` and loads a newer artifact in the background."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, LiteralString, Self, TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from reco.adapters.postgres_schema import connect, redacted_url
from reco.exceptions import BackendUnavailable
from reco.ports import ModelVersion

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_META: Final[LiteralString] = (
    "version, kind, extract(epoch FROM created_at), params, metrics, size_bytes"
)


def _meta(row: TupleRow) -> ModelVersion:
    version, kind, created, params, metrics, size = row
    return ModelVersion(
        version=int(version),
        kind=str(kind),
        created_at=float(created),
        params=dict(params or {}),
        metrics=dict(metrics or {}),
        size_bytes=int(size),
    )


class PostgresModelStore:
    def __init__(
        self, conn_factory: Callable[[], psycopg.Connection[TupleRow]], *, where: str
    ) -> None:
        self._connect = conn_factory
        self._where = where
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[TupleRow] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, application_name: str = "reco-models") -> Self:
        return cls(lambda: connect(url, application_name=application_name), where=redacted_url(url))

    def publish(
        self,
        kind: str,
        artifact: bytes,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
    ) -> ModelVersion:
        def insert(conn: psycopg.Connection[TupleRow]) -> ModelVersion:
            row = conn.execute(
                "INSERT INTO model_versions (kind, params, metrics, artifact, size_bytes)"
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {_META}",
                (kind, Jsonb(dict(params)), Jsonb(dict(metrics)), artifact, len(artifact)),
            ).fetchone()
            assert row is not None
            return _meta(row)

        return self._run(insert)

    def latest(self, kind: str) -> ModelVersion | None:
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT {_META} FROM model_versions WHERE kind = %s AND artifact IS NOT NULL"
                " ORDER BY version DESC LIMIT 1",
                (kind,),
            ).fetchone()
        )
        return None if row is None else _meta(row)

    def versions(self, kind: str) -> list[ModelVersion]:
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT {_META} FROM model_versions WHERE kind = %s ORDER BY version DESC",
                (kind,),
            ).fetchall()
        )
        return [_meta(r) for r in rows]

    def artifact(self, version: int) -> bytes:
        row = self._run(
            lambda conn: conn.execute(
                "SELECT artifact FROM model_versions WHERE version = %s AND artifact IS NOT NULL",
                (version,),
            ).fetchone()
        )
        if row is None:
            raise KeyError(f"model version {version} is not stored")
        return bytes(row[0])

    def prune(self, kind: str, keep: int) -> int:
        def delete(conn: psycopg.Connection[TupleRow]) -> int:
            cur = conn.execute(
                "DELETE FROM model_versions WHERE kind = %s AND version NOT IN"
                " (SELECT version FROM model_versions WHERE kind = %s"
                "  ORDER BY version DESC LIMIT %s)",
                (kind, kind, keep),
            )
            return cur.rowcount

        return self._run(delete)

    def ready(self) -> bool:
        try:
            self._run(lambda conn: conn.execute("SELECT 1").fetchone())
        except BackendUnavailable as exc:
            logger.warning("model store not ready: %s", exc)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, work: Callable[[psycopg.Connection[TupleRow]], _T]) -> _T:
        """Run ``work``, reconnecting if the last connection broke (a restarted database);
        the caller retries: polling for a new version is retried by its next tick."""
        with self._lock:
            if self._closed:
                raise BackendUnavailable("the model store is closed")
            try:
                if self._conn is None:
                    self._conn = self._connect()
                return work(self._conn)
            except psycopg.OperationalError as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn.close()
                    self._conn = None
                raise BackendUnavailable(f"model store at {self._where}: {exc}") from exc
