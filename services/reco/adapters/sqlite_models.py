"""Model versions on SQLite, in the data directory of embedded mode (``models.db``).

``reco train --data-dir`` writes while ``reco dev`` reads: WAL mode lets the api keep
reading during the write, and a version is one row, committed or not."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from reco.exceptions import BackendUnavailable
from reco.ports import ModelVersion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_versions (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    artifact BLOB NOT NULL,
    size_bytes INTEGER NOT NULL
);
"""
_META = "version, kind, created_at, params, metrics, size_bytes"


def _meta(row: tuple[Any, ...]) -> ModelVersion:
    version, kind, created, params, metrics, size = row
    return ModelVersion(
        version=int(version),
        kind=str(kind),
        created_at=float(created),
        params=orjson.loads(params),
        metrics=orjson.loads(metrics),
        size_bytes=int(size),
    )


class SqliteModelStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def publish(
        self,
        kind: str,
        artifact: bytes,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
    ) -> ModelVersion:
        row = self._query(
            "INSERT INTO model_versions (kind, created_at, params, metrics, artifact, size_bytes)"
            f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_META}",
            (kind, time.time(), orjson.dumps(dict(params)), orjson.dumps(dict(metrics)),
             artifact, len(artifact)),
        )  # fmt: skip
        return _meta(row[0])

    def latest(self, kind: str) -> ModelVersion | None:
        rows = self._query(
            f"SELECT {_META} FROM model_versions WHERE kind = ? ORDER BY version DESC LIMIT 1",
            (kind,),
        )
        return _meta(rows[0]) if rows else None

    def versions(self, kind: str) -> list[ModelVersion]:
        rows = self._query(
            f"SELECT {_META} FROM model_versions WHERE kind = ? ORDER BY version DESC", (kind,)
        )
        return [_meta(r) for r in rows]

    def artifact(self, version: int) -> bytes:
        rows = self._query("SELECT artifact FROM model_versions WHERE version = ?", (version,))
        if not rows:
            raise KeyError(f"model version {version} is not stored")
        return bytes(rows[0][0])

    def prune(self, kind: str, keep: int) -> int:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM model_versions WHERE kind = ? AND version NOT IN"
                " (SELECT version FROM model_versions WHERE kind = ?"
                "  ORDER BY version DESC LIMIT ?)",
                (kind, kind, keep),
            )
            return cur.rowcount

    def ready(self) -> bool:
        try:
            self._query("SELECT 1", ())
        except BackendUnavailable:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"model store {self.path}: {exc}") from exc
