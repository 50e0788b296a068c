"""Shared fixtures: an embedded engine on a temp data dir, and a wait helper."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reco.embedded import EmbeddedEngine, create_app
from reco.settings import EmbeddedSettings

pytest_plugins = ["tests.support.fixtures"]

REPO = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout_s: float = 5.0, every_s: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(every_s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def settings_for(data_dir: Path, **overrides: Any) -> EmbeddedSettings:
    return EmbeddedSettings(data_dir=data_dir, **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> EmbeddedSettings:
    return settings_for(tmp_path / "data")


@pytest.fixture
def client(settings: EmbeddedSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def engine(settings: EmbeddedSettings) -> Iterator[EmbeddedEngine]:
    eng = EmbeddedEngine.open(settings)
    eng.start()
    try:
        yield eng
    finally:
        eng.close()


def caught_up(engine: EmbeddedEngine) -> Callable[[], bool]:
    """True once the processor has applied every record in the log."""

    def check() -> bool:
        end = engine.producer.end_offset()
        return engine.store.applied_offsets().get(0, 0) >= end

    return check
