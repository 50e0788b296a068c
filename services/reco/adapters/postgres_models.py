"""Model versions on PostgreSQL (the ``model_versions`` table): the training job publishes,
every api replica polls ``latest`` and loads a newer artifact in the background."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, LiteralString, Self

from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from reco.adapters.postgres_conn import Connection, SharedConnection
from reco.adapters.postgres_schema import connect, redacted_url
from reco.ports import ModelVersion

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
    def __init__(self, conn: SharedConnection) -> None:
        self._db = conn

    @classmethod
    def from_url(
        cls, url: str, *, application_name: str = "reco-models", timeout_s: float | None = None
    ) -> Self:
        return cls(
            SharedConnection(
                lambda: connect(url, application_name=application_name, timeout_s=timeout_s),
                what="model store",
                where=redacted_url(url),
            )
        )

    def publish(
        self,
        kind: str,
        artifact: bytes,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
    ) -> ModelVersion:
        def insert(conn: Connection) -> ModelVersion:
            row = conn.execute(
                "INSERT INTO model_versions (kind, params, metrics, artifact, size_bytes)"
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {_META}",
                (kind, Jsonb(dict(params)), Jsonb(dict(metrics)), artifact, len(artifact)),
            ).fetchone()
            assert row is not None
            return _meta(row)

        return self._db.run(insert)

    def latest(self, kind: str) -> ModelVersion | None:
        row = self._db.run(
            lambda conn: conn.execute(
                f"SELECT {_META} FROM model_versions WHERE kind = %s AND artifact IS NOT NULL"
                " ORDER BY version DESC LIMIT 1",
                (kind,),
            ).fetchone()
        )
        return None if row is None else _meta(row)

    def versions(self, kind: str) -> list[ModelVersion]:
        rows = self._db.run(
            lambda conn: conn.execute(
                f"SELECT {_META} FROM model_versions WHERE kind = %s ORDER BY version DESC",
                (kind,),
            ).fetchall()
        )
        return [_meta(r) for r in rows]

    def artifact(self, version: int) -> bytes:
        row = self._db.run(
            lambda conn: conn.execute(
                "SELECT artifact FROM model_versions WHERE version = %s AND artifact IS NOT NULL",
                (version,),
            ).fetchone()
        )
        if row is None:
            raise KeyError(f"model version {version} is not stored")
        return bytes(row[0])

    def prune(self, kind: str, keep: int) -> int:
        def delete(conn: Connection) -> int:
            cur = conn.execute(
                "DELETE FROM model_versions WHERE kind = %s AND version NOT IN"
                " (SELECT version FROM model_versions WHERE kind = %s"
                "  ORDER BY version DESC LIMIT %s)",
                (kind, kind, keep),
            )
            return cur.rowcount

        return self._db.run(delete)

    def ready(self) -> bool:
        return self._db.ready()

    def close(self) -> None:
        self._db.close()
