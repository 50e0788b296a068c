"""Replay against a small real HTTP server running in a thread of the test process.

The server plays the engine's ingest: it records every request, answers from a script (503
with Retry-After, a dropped connection, 401) where the test asks for it, and otherwise accepts
each batch, rejecting events whose item id is ``bad``.
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from reco.datasets import read_events, read_items
from reco.replay import BACKOFF_BASE_S, ReplayError, _retry_after, replay

pytestmark = pytest.mark.unit

BEHAVIOURS = ("pv", "pv", "pv", "cart", "fav", "buy")
EVENTS = 1_234
BAD_EVERY = 97


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorization: str | None
    batch: list[dict[str, Any]]
    status: int | None
    port: int
    at: float


@dataclass
class FakeIngest:
    """What the server answers, and what it was sent."""

    script: dict[tuple[str, int], str] = field(default_factory=dict)
    """(method, ordinal of that method's requests from 1) → "503", "drop" or "401"."""
    always: str | None = None
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, ordinal: int, batch: list[dict[str, Any]]) -> Answer | None:
        scripted = self.always or self.script.get((method, ordinal))
        if scripted == "drop":
            return None
        if scripted == "503":
            return Answer(503, {"detail": "event log unavailable"}, {"Retry-After": "1"})
        if scripted == "503-now":
            return Answer(503, {"detail": "event log unavailable"}, {"Retry-After": "0"})
        if scripted == "401":
            return Answer(401, {"detail": "invalid API key"})
        if method == "PUT":
            return Answer(200, {"updated": len(batch)})
        rejected = [
            {"index": index, "error": "item_id: unknown item"}
            for index, event in enumerate(batch)
            if event["item_id"] == "bad"
        ]
        return Answer(202, {"accepted": len(batch) - len(rejected), "rejected": rejected})

    def accepted_batches(self, method: str = "POST") -> list[list[dict[str, Any]]]:
        return [r.batch for r in self.requests if r.method == method and r.status in (200, 202)]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class IngestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ingest: FakeIngest) -> None:
        super().__init__(("127.0.0.1", 0), IngestHandler)
        self.ingest = ingest


class IngestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the engine's server speaks it
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: IngestServer

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ingest = self.server.ingest
        with ingest.lock:
            ordinal = 1 + sum(1 for r in ingest.requests if r.method == self.command)
            answer = ingest.answer(self.command, ordinal, batch)
            ingest.requests.append(self._record(batch, answer))
        if answer is None:
            self.close_connection = True  # hang up without answering, like a crashed server
            return
        self._send(answer)

    def _record(self, batch: list[dict[str, Any]], answer: Answer | None) -> Request:
        return Request(
            method=self.command,
            path=self.path,
            authorization=self.headers.get("Authorization"),
            batch=batch,
            status=answer.status if answer else None,
            port=self.client_address[1],
            at=time.monotonic(),
        )

    def _send(self, answer: Answer) -> None:
        body = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ingest() -> Iterator[tuple[FakeIngest, str]]:
    fake = FakeIngest()
    server = IngestServer(fake)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A Taobao-format file: it has items, and every 97th event names the item ``bad``."""
    rows = []
    for n in range(EVENTS):
        item = "bad" if n % BAD_EVERY == BAD_EVERY - 1 else str(n % 300)
        behaviour = BEHAVIOURS[n % len(BEHAVIOURS)]
        rows.append(f"{n // 50},{item},{n % 7},{behaviour},{1_511_544_070 + n}\n")
    path = tmp_path / "UserBehavior.csv"
    path.write_text("".join(rows), encoding="utf-8")
    return path


def flatten(batches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record for batch in batches for record in batch]


def test_every_event_arrives_once_in_order_after_a_503(
    ingest: tuple[FakeIngest, str], dataset: Path
) -> None:
    fake, url = ingest
    fake.script[("POST", 1)] = "503"

    report = replay(dataset, "taobao", url, batch_size=100, api_key="k3y", progress=False)

    expected = list(read_events(dataset, "taobao"))
    assert flatten(fake.accepted_batches()) == expected
    refused, retried = [r for r in fake.requests if r.method == "POST"][:2]
    assert (refused.status, refused.batch) == (503, retried.batch)
    assert retried.at - refused.at >= 0.95  # Retry-After: 1 was honoured
    bad = EVENTS // BAD_EVERY
    assert (report.sent, report.accepted, report.rejected) == (EVENTS, EVENTS - bad, bad)
    assert report.retries == 1
    assert report.seconds > 0
    assert report.events_per_s == pytest.approx(report.sent / report.seconds)


def test_items_go_first_with_the_api_key_over_one_connection(
    ingest: tuple[FakeIngest, str], dataset: Path
) -> None:
    fake, url = ingest

    report = replay(dataset, "taobao", url, batch_size=100, api_key="k3y", progress=False)

    items = list(read_items(dataset, "taobao"))
    assert flatten(fake.accepted_batches("PUT")) == items
    assert report.items_sent == len(items) == 301
    methods = [r.method for r in fake.requests]
    assert methods == ["PUT"] * 4 + ["POST"] * 13
    assert {(r.method, r.path) for r in fake.requests} == {("PUT", "/items"), ("POST", "/events")}
    assert {r.authorization for r in fake.requests} == {"Bearer k3y"}
    assert len({r.port for r in fake.requests}) == 1  # keep-alive: one TCP connection


def test_a_dropped_connection_is_retried(ingest: tuple[FakeIngest, str], dataset: Path) -> None:
    fake, url = ingest
    fake.script[("POST", 2)] = "drop"

    report = replay(dataset, "taobao", url, batch_size=500, items=False, progress=False)

    assert flatten(fake.accepted_batches()) == list(read_events(dataset, "taobao"))
    assert [r.status for r in fake.requests] == [202, None, 202, 202]
    assert (report.sent, report.retries) == (EVENTS, 1)


def test_limit_without_items_or_api_key(ingest: tuple[FakeIngest, str], dataset: Path) -> None:
    fake, url = ingest

    report = replay(
        dataset, "taobao", url + "/", batch_size=100, limit=250, items=False, progress=False
    )

    assert [len(batch) for batch in fake.accepted_batches()] == [100, 100, 50]
    assert {r.method for r in fake.requests} == {"POST"}
    assert {r.authorization for r in fake.requests} == {None}
    assert (report.sent, report.items_sent) == (250, 0)


def test_an_engine_that_stays_unavailable_ends_the_replay(
    ingest: tuple[FakeIngest, str], dataset: Path
) -> None:
    fake, url = ingest
    fake.always = "503-now"

    with pytest.raises(ReplayError, match=r"/items failed 3 times, last with HTTP 503"):
        replay(dataset, "taobao", url, max_retries=2, progress=False)
    assert len(fake.requests) == 3


def test_a_refused_key_is_not_retried(ingest: tuple[FakeIngest, str], dataset: Path) -> None:
    fake, url = ingest
    fake.always = "401"

    with pytest.raises(ReplayError, match="HTTP 401; check the API key"):
        replay(dataset, "taobao", url, api_key="wrong", items=False, progress=False)
    assert len(fake.requests) == 1


def test_no_server_listening_is_a_clear_error(dataset: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now: the first attempt is refused, and not retried.
    started = time.monotonic()
    with pytest.raises(ReplayError, match=r"nothing answers at .*; start the engine"):
        replay(dataset, "taobao", f"http://127.0.0.1:{port}", progress=False)
    assert time.monotonic() - started < BACKOFF_BASE_S


def test_progress_bar_shows_the_event_rate(
    ingest: tuple[FakeIngest, str], dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = ingest

    replay(dataset, "taobao", url, batch_size=100, items=False)

    assert "events" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    headers = {} if header is None else {"Retry-After": header}
    assert _retry_after(httpx.Response(503, headers=headers)) == seconds


def test_retry_after_http_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = _retry_after(httpx.Response(503, headers={"Retry-After": later}))
    assert wait == pytest.approx(30, abs=2)
