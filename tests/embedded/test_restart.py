"""``reco dev`` as a real process, killed mid-stream and restarted on the same data dir:
every accepted event is kept, none counts twice, the features equal an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from reco.demo import generate
from reco.embedded import EmbeddedEngine, create_app
from tests.conftest import caught_up, free_port, settings_for, wait_until

pytestmark = pytest.mark.embedded


class DevServer:
    """``reco dev`` in a subprocess."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable, "-m", "reco.cli", "--log-level", "warning", "dev",
            "--port", str(self.port), "--data-dir", str(data_dir), *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        wait_until(self._ready, timeout_s=30, every_s=0.05)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"reco dev exited: {self.proc.stdout.read()}")  # type: ignore[union-attr]
        try:
            return httpx.get(self.url + "/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def shop() -> Any:
    return generate(seed=3, users=80, now=1_750_000_000.0)


def _batches(events: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def _post_all(url: str, batches: list[list[dict[str, Any]]]) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        for batch in batches:
            r = http.post("/events", json=batch)
            assert r.status_code == 202, r.text
            assert r.json()["accepted"] == len(batch)


def _views(get: Any, users: list[str], items: list[str]) -> dict[str, Any]:
    """Everything the api shows: each user's page, each item's similar list, popular."""

    def page(path: str, **params: Any) -> list[tuple[str, float]]:
        body = get(path, params={"count": 20, **params}).json()
        return sorted((i["item_id"], round(i["score"], 4)) for i in body["items"])

    out: dict[str, Any] = {"popular": page("/popular")}
    out.update({f"u:{u}": page("/recommendations", user_id=u) for u in users})
    out.update({f"i:{i}": page(f"/items/{i}/similar") for i in items})
    return out


def test_kill_and_restart_mid_stream_keeps_every_event_once(tmp_path: Path, shop: Any) -> None:
    events: list[dict[str, Any]] = shop.events
    batches = list(_batches(events, 50))
    half = len(batches) // 2
    server = DevServer(tmp_path / "live")
    server.start()
    try:
        httpx.put(server.url + "/items", json=shop.items).raise_for_status()
        _post_all(server.url, batches[:half])
        # The next batch is in flight when the process dies: its answer may never come.
        inflight = threading.Thread(
            target=lambda: _swallow(lambda: _post_all(server.url, [batches[half]]))
        )
        inflight.start()
        server.kill()
        inflight.join()

        server.start()
        # A client that got no answer sends the batch again; event ids make that safe.
        _post_all(server.url, batches[half:])
        wait_until(lambda: _processed(server.url) >= len(events), timeout_s=30)

        reference = EmbeddedEngine.open(settings_for(tmp_path / "reference"))
        reference.start()
        try:
            reference.catalog.upsert([_item(i) for i in shop.items])
            with TestClient(create_app(reference.settings, reference)) as ref:
                _post_all_client(ref, batches)
                wait_until(caught_up(reference), timeout_s=30)
                users = sorted({e["user_id"] for e in events})
                items = sorted({e["item_id"] for e in events})[:60]
                with httpx.Client(base_url=server.url) as live:
                    assert _views(live.get, users, items) == _views(ref.get, users, items)
                assert reference.store.snapshot()["offsets"] == {0: len(events)}
        finally:
            reference.close()
    finally:
        server.stop()


def test_sigterm_then_restart_keeps_everything(tmp_path: Path, shop: Any) -> None:
    server = DevServer(tmp_path / "data")
    server.start()
    try:
        _post_all(server.url, list(_batches(shop.events, 200)))
        wait_until(lambda: _processed(server.url) >= len(shop.events), timeout_s=30)
        users, items = ["demo-user", "shopper-001"], ["running-00-cap"]
        with httpx.Client(base_url=server.url) as http:
            before = _views(http.get, users, items)
        server.stop()
        assert server.proc is not None
        assert server.proc.stdout is not None
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why.
        assert server.proc.returncode in (0, -signal.SIGTERM)
        assert "Traceback" not in server.proc.stdout.read()
        server.start()
        with httpx.Client(base_url=server.url) as http:
            assert _views(http.get, users, items) == before
    finally:
        server.stop()


def test_make_run_demo_answers_the_readme_curl(tmp_path: Path) -> None:
    server = DevServer(tmp_path / "demo", "--demo")
    server.start()
    try:
        body = httpx.get(
            server.url + "/recommendations", params={"user_id": "demo-user", "count": 10}
        ).json()
        assert len(body["items"]) == 10
        assert body["personalised"] is True
        assert all(item["reasons"] for item in body["items"])
        assert any(
            r.startswith("viewed together with") for i in body["items"] for r in i["reasons"]
        )
    finally:
        server.stop()
    assert server.proc is not None
    assert server.proc.stdout is not None
    banner = server.proc.stdout.read()
    assert "demo user:  demo-user" in banner
    assert f"curl '{server.url}/recommendations?user_id=demo-user&count=10'" in banner


def _swallow(fn: Any) -> None:
    with contextlib.suppress(httpx.HTTPError, AssertionError):
        fn()


def _processed(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("events_processed_total"):
            return float(line.split()[1])
    return 0.0


def _item(raw: dict[str, Any]) -> Any:
    from reco.catalog import ItemIn

    return ItemIn(**raw)


def _post_all_client(client: TestClient, batches: list[list[dict[str, Any]]]) -> None:
    for batch in batches:
        assert client.post("/events", json=batch).status_code == 202
