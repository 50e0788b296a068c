"""Trained embeddings in the embedded app: ``reco train`` publishes a version, the running
app loads it without a restart, the embedding term feeds the score, and a cold item (in the
catalog, never in an event) gets a similar list from its category's centroid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reco.adapters.sqlite_models import SqliteModelStore
from reco.cli import main as reco
from reco.embedded import create_app
from reco.embeddings import EMBEDDINGS
from reco.settings import EmbeddedSettings, SignalWeights
from tests.conftest import wait_until

pytestmark = pytest.mark.api

CATALOG = [
    {"item_id": "x", "title": "Trail Shoe", "category": "shoes"},
    {"item_id": "boots", "title": "Boots", "category": "shoes"},  # never in an event
    {"item_id": "laces", "title": "Laces", "category": "accessories"},
    {"item_id": "socks", "title": "Socks", "category": "accessories"},
    {"item_id": "tent", "title": "Tent", "category": "camping"},
    {"item_id": "stove", "title": "Stove", "category": "camping"},
    {"item_id": "lamp", "title": "Lamp", "category": "camping"},
]
ONLY_EMBEDDING = SignalWeights(
    coview=0, sequence=0, neighbours=0, embedding=1, popularity=0, recency=0
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def app_client(data_dir: Path) -> Iterator[TestClient]:
    settings = EmbeddedSettings(data_dir=data_dir, model_refresh_s=0.05, weights=ONLY_EMBEDDING)
    with TestClient(create_app(settings)) as c:
        c.put("/items", json=CATALOG).raise_for_status()
        events = []
        for n in range(40):
            items = ["x", "laces", "socks"] if n % 2 else ["tent", "stove", "lamp"]
            events += [{"user_id": f"s{n}", "item_id": i, "type": "view"} for i in items]
        assert c.post("/events", json=events).status_code == 202
        wait_until(lambda: c.get("/popular").json()["items"])
        yield c


def _model_version(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("embedding_model_version "):
            return float(line.split()[1])
    raise AssertionError("embedding_model_version not exported")


def _train(data_dir: Path, *extra: str) -> None:
    assert reco(["train", "--data-dir", str(data_dir), "--epochs", "50", *extra]) == 0


def test_train_is_loaded_without_restart_and_feeds_the_score(
    app_client: TestClient, data_dir: Path
) -> None:
    before = app_client.get("/recommendations", params={"user_id": "s0", "count": 2}).json()
    assert before["personalised"], "s0 has history"
    assert not before["items"] or all(
        "similar to" not in r for i in before["items"] for r in i["reasons"]
    ), "no model yet: nothing is explained by an embedding"
    assert _model_version(app_client) == 0

    _train(data_dir)
    wait_until(lambda: _model_version(app_client) == 1, timeout_s=10)

    body = app_client.get(
        "/recommendations",
        params={"user_id": "newbie", "count": 2},
    ).json()
    assert not body["personalised"]
    app_client.post("/events", json={"user_id": "newbie", "item_id": "tent", "type": "view"})
    body = wait_until(
        lambda: (
            b
            if (
                b := app_client.get(
                    "/recommendations", params={"user_id": "newbie", "count": 2}
                ).json()
            )["personalised"]
            else None
        )
    )
    assert {i["item_id"] for i in body["items"]} == {"stove", "lamp"}
    assert all("similar to Tent (tent)" in i["reasons"] for i in body["items"])

    _train(data_dir, "--dim", "16")
    wait_until(lambda: _model_version(app_client) == 2, timeout_s=10)


def test_cold_item_gets_its_categorys_neighbours(app_client: TestClient, data_dir: Path) -> None:
    cold = app_client.get("/items/boots/similar", params={"count": 3}).json()
    assert cold["personalised"] is False, "no model: popular items only"

    _train(data_dir)
    wait_until(lambda: _model_version(app_client) == 1, timeout_s=10)
    cold = app_client.get("/items/boots/similar", params={"count": 3}).json()
    assert cold["personalised"] is True
    ids = [i["item_id"] for i in cold["items"]]
    # x, its category's only trained item, and what x's shoppers looked at (ALS gives items
    # that always go together one vector, so their order is a tie).
    assert set(ids) == {"x", "laces", "socks"}
    assert "similar to Boots (boots)" in cold["items"][0]["reasons"]


def test_a_bad_artifact_keeps_the_last_good_model(app_client: TestClient, data_dir: Path) -> None:
    _train(data_dir)
    wait_until(lambda: _model_version(app_client) == 1, timeout_s=10)
    store = SqliteModelStore(data_dir / "models.db")
    try:
        bad = store.publish(EMBEDDINGS, b"not a model", params={}, metrics={})
    finally:
        store.close()

    def failures() -> float:
        for line in app_client.get("/metrics").text.splitlines():
            if line.startswith("embedding_model_load_failures_total "):
                return float(line.split()[1])
        return 0.0

    wait_until(lambda: failures() >= 1, timeout_s=10)
    assert _model_version(app_client) == 1, f"version {bad.version} refused, 1 still served"
    similar = app_client.get("/items/x/similar", params={"count": 2}).json()
    assert {i["item_id"] for i in similar["items"]} == {"laces", "socks"}
