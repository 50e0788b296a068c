"""API keys (write vs read), rate limits, and no secret in logs or reprs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reco.embedded import create_app
from tests.conftest import settings_for

pytestmark = pytest.mark.api

WRITE, READ = "w-secret-1234", "r-secret-5678"
EVENT = {"user_id": "u", "item_id": "a", "type": "view"}


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[TestClient]:
    settings = settings_for(tmp_path, api_keys=[WRITE], read_api_keys=[READ])
    with TestClient(create_app(settings)) as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_writes_need_a_write_key(locked: TestClient) -> None:
    missing = locked.post("/events", json=EVENT)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "API key is required" in missing.json()["detail"]
    assert locked.post("/events", json=EVENT, headers=_auth("nope")).status_code == 401
    read_only = locked.post("/events", json=EVENT, headers=_auth(READ))
    assert read_only.status_code == 403
    assert "may read but not write" in read_only.json()["detail"]
    assert locked.post("/events", json=EVENT, headers=_auth(WRITE)).status_code == 202
    assert locked.post("/events", json=EVENT, headers={"X-API-Key": WRITE}).status_code == 202
    assert locked.put("/items", json={"item_id": "a"}, headers=_auth(READ)).status_code == 403
    assert locked.put("/items", json={"item_id": "a"}, headers=_auth(WRITE)).status_code == 200


def test_reads_need_a_read_or_write_key(locked: TestClient) -> None:
    params = {"user_id": "u"}
    assert locked.get("/recommendations", params=params).status_code == 401
    assert locked.get("/recommendations", params=params, headers=_auth(READ)).status_code == 200
    assert locked.get("/popular", headers=_auth(WRITE)).status_code == 200
    assert locked.get("/items/a/similar", headers=_auth("bad")).status_code == 401


def test_probes_and_metrics_stay_open(locked: TestClient) -> None:
    assert locked.get("/health/live").status_code == 200
    assert locked.get("/metrics").status_code == 200


def test_open_by_default(client: TestClient) -> None:
    assert client.post("/events", json=EVENT).status_code == 202


def test_rate_limit_per_client(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, rate_limit_per_s=5)
    with TestClient(create_app(settings)) as client:
        codes = [client.get("/popular").status_code for _ in range(8)]
        assert codes[:5] == [200] * 5
        assert 429 in codes[5:]
        limited = client.get("/popular")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        # Another client (another key) has its own budget.
        assert client.get("/popular", headers={"X-API-Key": "other"}).status_code == 200


def test_no_secret_in_logs_or_reprs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(tmp_path, api_keys=[WRITE], read_api_keys=[READ])
    assert WRITE not in repr(settings)
    assert READ not in str(settings.model_dump())
    with TestClient(create_app(settings)) as client:
        client.post("/events", json=EVENT, headers=_auth(WRITE))
        client.post("/events", json=EVENT, headers=_auth(READ))
        client.get("/popular", headers=_auth("wrong-" + WRITE))
    assert WRITE not in caplog.text
    assert READ not in caplog.text
