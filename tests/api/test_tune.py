"""``reco tune`` against the running embedded app: the shop's events go in through
``POST /events``, ``reco tune --data-dir`` searches them and publishes what beats the served
settings, the app applies it without a restart (the next recommendation changes, with its
reason), and ``reco tune --clear`` gives the configured settings back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reco.cli import main as reco
from reco.embedded import create_app
from reco.settings import EmbeddedSettings, SignalWeights
from tests.conftest import wait_until
from tests.support.shops import gauge, post_shop, probe, ring_walks

pytestmark = pytest.mark.api

DAY = 86400.0
# The shop's configuration leaves the sequence signal out; on this shop it is the one that
# knows what comes next.
CONFIGURED = {"RECO_WEIGHTS__SEQUENCE": "0", "RECO_WEIGHTS__NEIGHBOURS": "0"}
SEQUENCE_REASON = "often viewed next after"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for name, value in CONFIGURED.items():
        monkeypatch.setenv(name, value)
    settings = EmbeddedSettings(data_dir=data_dir, model_refresh_s=0.05)
    assert settings.weights == SignalWeights(sequence=0, neighbours=0)
    with TestClient(create_app(settings)) as c:
        rows = ring_walks(240, start=time.time() - 21 * DAY, every_s=20 * DAY / 240)
        post_shop(c, rows, probe=("i3", "i4"))
        yield c


def _tuned_version(client: TestClient) -> float:
    return gauge(client, "tuned_settings_version")


def _reasons(items: list[dict[str, object]]) -> str:
    return " ".join(str(r) for i in items for r in i["reasons"])  # type: ignore[attr-defined]


def test_tune_publishes_what_wins_and_the_app_applies_it(
    client: TestClient, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = probe(client)
    assert SEQUENCE_REASON not in _reasons(before), "the sequence signal is not weighted"
    assert _tuned_version(client) == 0

    assert reco(["tune", "--data-dir", str(data_dir), "--test-days", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["published"] == {"version": 1, "kind": "tuned-settings"}
    assert report["changed"]["weights.sequence"][0] == 0
    assert report["changed"]["weights.sequence"][1] > 0
    assert report["figures"]["MRR@20"]["difference"][1] > 0, "better beyond noise"

    wait_until(lambda: _tuned_version(client) == 1, timeout_s=10)
    after = probe(client)
    assert after[0]["item_id"] == "i5", "the next item of the ring comes first"
    assert f"{SEQUENCE_REASON} i4" in after[0]["reasons"]

    assert reco(["tune", "--data-dir", str(data_dir), "--clear"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cleared": True, "version": 2}
    wait_until(lambda: _tuned_version(client) == 2, timeout_s=10)
    assert SEQUENCE_REASON not in _reasons(probe(client)), "configured settings again"


def test_tune_says_what_to_do_when_it_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "nothing"
    assert reco(["tune", "--data-dir", str(empty)]) == 1
    assert "run `reco dev --data-dir" in capsys.readouterr().err

    assert reco(["tune", "--data-dir", str(empty), "--events", "x.csv"]) == 2
    assert "--events and --format go together" in capsys.readouterr().err

    assert reco(["tune", "--budget-s", "0"]) == 2
    assert "RECO_BUDGET_S" in capsys.readouterr().err
