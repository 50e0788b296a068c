"""``reco train --ranker`` against the running embedded app: the shop's events go in through
``POST /events``, the command replays them through the engine, trains LambdaRank on each
request's candidates and publishes the model; the app loads it without a restart and the
next recommendation is in the model's order, with the weighted sum's reasons."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reco.adapters.sqlite_models import SqliteModelStore
from reco.cli import main as reco
from reco.embedded import create_app
from reco.experiments import Experiments
from reco.ranking import RANKER
from reco.settings import EmbeddedSettings
from tests.conftest import wait_until
from tests.support.shops import gauge, post_shop, probe, random_views, ring_walks

pytestmark = pytest.mark.api

DAY = 86400.0
# Configured without the sequence signal, the weighted sum does not know what comes next on
# this shop; the ranker still sees the sequence values among each candidate's features.
CONFIGURED = {"RECO_WEIGHTS__SEQUENCE": "0", "RECO_WEIGHTS__NEIGHBOURS": "0"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for name, value in CONFIGURED.items():
        monkeypatch.setenv(name, value)
    settings = EmbeddedSettings(data_dir=data_dir, model_refresh_s=0.05)
    with TestClient(create_app(settings)) as c:
        rows = ring_walks(300, start=time.time() - 21 * DAY, every_s=20 * DAY / 300)
        post_shop(c, rows, probe=("i13", "i14"))
        yield c


def _ranker_version(client: TestClient) -> float:
    return gauge(client, "ranker_model_version")


def test_the_ranker_is_trained_published_and_swapped_in(
    client: TestClient, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = probe(client)
    assert _ranker_version(client) == 0

    assert reco(["train", "--ranker", "--data-dir", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == RANKER
    metrics = report["metrics"]
    assert metrics["valid_ndcg20_ranker"] > metrics["valid_ndcg20_weighted_sum"]
    assert metrics["examples"] > 100

    wait_until(lambda: _ranker_version(client) == report["version"], timeout_s=10)
    after = probe(client)
    assert after[0]["item_id"] == "i15", "the next item of the ring comes first"
    assert before[0]["item_id"] != "i15", "the weighted sum alone did not know it"
    scores = [float(str(i["score"])) for i in after]
    assert scores == sorted(scores, reverse=True)
    assert all(i["reasons"] for i in after)


def test_a_ranker_that_does_not_beat_the_weighted_sum_is_not_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Sessions of items drawn at random: nothing is there to learn.
    data_dir = tmp_path / "random"
    with TestClient(create_app(EmbeddedSettings(data_dir=data_dir))) as c:
        post_shop(c, random_views(300, start=time.time() - 21 * DAY, every_s=20 * DAY / 300))

    assert reco(["train", "--ranker", "--data-dir", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] is None
    assert report["verdict"].startswith("kept")
    low = report["metrics"]["valid_ndcg20_gain"][1]
    assert low <= 0, "not better beyond noise"
    store = SqliteModelStore(data_dir / "models.db")
    try:
        assert store.latest(RANKER) is None
    finally:
        store.close()


def test_a_broken_ranker_keeps_the_weighted_sum(client: TestClient, data_dir: Path) -> None:
    before = probe(client)
    store = SqliteModelStore(data_dir / "models.db")
    try:
        store.publish(RANKER, b'{"features": []}\nnot a model', params={}, metrics={})
    finally:
        store.close()

    def failures() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("ranker_model_load_failures_total "):
                return float(line.split()[1])
        return 0.0

    wait_until(lambda: failures() >= 1, timeout_s=10)
    assert _ranker_version(client) == 0
    assert probe(client) == before


def test_too_small_a_log_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path / "small")
    with TestClient(create_app(settings)) as c:
        rows = ring_walks(5, start=time.time() - DAY, every_s=600)
        assert c.post("/events", json=rows).status_code == 202
        wait_until(lambda: c.get("/health/ready").status_code == 200, timeout_s=30)
    assert reco(["train", "--ranker", "--data-dir", str(tmp_path / "small")]) == 1
    assert "the ranker needs a few hundred" in capsys.readouterr().err


def test_an_experiment_serves_the_ranker_to_its_variant_only(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sessions in the ``ranker`` variant get the model's order, those in ``sum`` the
    weighted sum's, from one app with one published ranker."""
    experiment = {"name": "rank", "variants": [{"name": "sum"}, {"name": "ranker", "ranker": True}]}
    for name, value in {**CONFIGURED, "RECO_EXPERIMENTS": json.dumps([experiment])}.items():
        monkeypatch.setenv(name, value)
    settings = EmbeddedSettings(data_dir=data_dir, model_refresh_s=0.05, cache_ttl_s=0)
    chooser = Experiments(settings.experiments)
    sessions: dict[str, str] = {}
    for n in range(100):
        chosen = chooser.assign(f"visitor{n}")
        assert chosen is not None
        sessions.setdefault(chosen.variant.name, f"visitor{n}")
    with TestClient(create_app(settings)) as c:
        rows = ring_walks(300, start=time.time() - 21 * DAY, every_s=20 * DAY / 300)
        post_shop(c, rows)
        views = [
            {"user_id": s, "session_id": s, "item_id": item, "type": "view"}
            for s in sessions.values()
            for item in ("i13", "i14")
        ]
        assert c.post("/events", json=views).status_code == 202
        wait_until(lambda: c.get("/health/ready").status_code == 200, timeout_s=30)
        assert reco(["train", "--ranker", "--data-dir", str(data_dir)]) == 0
        version = json.loads(capsys.readouterr().out)["version"]
        wait_until(lambda: _ranker_version(c) == version, timeout_s=10)

        def first(variant: str) -> str:
            params = {"session_id": sessions[variant], "count": 3}
            body = c.get("/recommendations", params=params).json()
            assert body["variant"] == variant
            return str(body["items"][0]["item_id"])

        assert first("ranker") == "i15", "the model knows what comes next"
        assert first("sum") != "i15", "the weighted sum, without the sequence weight, does not"
