"""Online A/B on the running embedded app, replayed: a shop whose history makes the next
item of a walk knowable, an experiment between a variant that knows it (the engine's
weights) and one that does not (popularity only), and simulated users who click the next
item when a recommendation shows it. The better variant must win on attributed clicks
beyond its interval, in ``GET /experiments``, in ``reco ab report`` and on ``/metrics``,
with every impression and click counted exactly once, whether the click names its
recommendation or is attributed by item and time."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from reco.cli import main as reco
from reco.embedded import create_app
from reco.settings import EmbeddedSettings
from tests.conftest import wait_until
from tests.support.shops import RING, post_shop, ring_walks

pytestmark = pytest.mark.api

DAY = 86400.0
USERS = 240
PAGE = 4
POPULARITY_ONLY = {
    "weights": {
        "coview": 0,
        "sequence": 0,
        "neighbours": 0,
        "embedding": 0,
        "recency": 0,
        "popularity": 1,
    }
}
EXPERIMENT = {
    "name": "next-item",
    "attributionWindowSeconds": 600,
    "variants": [
        {"name": "popular", "settings": POPULARITY_ONLY},
        {"name": "engine"},
    ],
}


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("RECO_EXPERIMENTS", json.dumps([EXPERIMENT]))
    settings = EmbeddedSettings(data_dir=tmp_path / "data", cache_ttl_s=0)
    assert settings.experiments[0].variants[0].settings.weights is not None
    with TestClient(create_app(settings)) as c:
        post_shop(c, ring_walks(240, start=time.time() - 21 * DAY, every_s=20 * DAY / 240))
        yield c


def _counts(client: TestClient) -> dict[str, dict[str, Any]]:
    (experiment,) = client.get("/experiments").json()["experiments"]
    return {v["name"]: v for v in experiment["variants"]}


def _simulate(client: TestClient) -> tuple[Counter[str], Counter[str]]:
    """Each user views an item of the ring, is recommended PAGE items, and clicks the next
    item of the ring when the page shows it (naming the recommendation or not, alternately)
    or views it without the page. Returns what each variant served and earned."""
    rng = random.Random(7)
    starts = {f"live{n}": rng.randrange(RING) for n in range(USERS)}
    views = [{"user_id": u, "item_id": f"i{k}", "type": "view"} for u, k in starts.items()]
    assert client.post("/events", json=views).status_code == 202
    wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s=30)

    served: Counter[str] = Counter()
    clicked: Counter[str] = Counter()
    follow: list[dict[str, Any]] = []
    for n, (user, k) in enumerate(starts.items()):
        body = client.get("/recommendations", params={"user_id": user, "count": PAGE}).json()
        variant = body["variant"]
        assert body["experiment"] == "next-item"
        assert variant in ("popular", "engine")
        assert body["recommendation_id"].startswith(f"next-item.{variant}.")
        served[variant] += 1
        nxt = f"i{(k + 1) % RING}"
        if nxt in [i["item_id"] for i in body["items"]]:
            clicked[variant] += 1
            click = {"user_id": user, "item_id": nxt, "type": "click"}
            if n % 2 == 0:
                click["recommendation_id"] = body["recommendation_id"]
            # A second click on the same item of the same page counts once.
            follow += [click, dict(click)]
        else:
            follow.append({"user_id": user, "item_id": nxt, "type": "view"})
    # The api writes its impression records off the request path: they are in the log
    # before the users' next events, as they would be in any human's time.
    client.app.state.impressions.flush()  # type: ignore[attr-defined]
    assert client.post("/events", json=follow).status_code == 202
    return served, clicked


def test_the_truly_better_variant_wins_on_attributed_clicks(
    client: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, clicked = _simulate(client)
    assert min(served.values()) > USERS // 3, f"both variants serve: {served}"

    def counted() -> bool:
        variants = _counts(client)
        return all(
            variants[v]["impressions"] == served[v]
            and variants[v]["events"]["click"]["count"] == clicked[v]
            for v in served
        )

    wait_until(counted, timeout_s=30)
    variants = _counts(client)
    for name, v in variants.items():
        # Every impression and click once; views of items no page showed count nowhere.
        assert v["impressions"] == served[name]
        assert v["events"]["click"]["count"] == clicked[name]
        assert v["events"]["view"]["count"] == 0
    engine = variants["engine"]
    assert engine["events"]["click"]["per_impression"] > 0.9, "the engine shows what comes next"
    assert variants["popular"]["events"]["click"]["per_impression"] < 0.5
    lift = engine["vs_control"]["click"]
    assert lift["interval"][0] > 0
    assert lift["verdict"] == "better"

    # reco ab report reads the same over HTTP (here through the app itself).
    def get(url: str, **kwargs: Any) -> httpx.Response:
        assert url == "http://engine/experiments"
        return client.get("/experiments", headers=kwargs.get("headers"))

    monkeypatch.setattr(httpx, "get", get)
    assert reco(["ab", "report", "--url", "http://engine"]) == 0
    text = capsys.readouterr().out
    assert "experiment next-item (control: popular)" in text
    assert "engine vs popular, click: +" in text
    assert ": better" in text

    metrics = client.get("/metrics").text
    line = (
        'experiment_events_total{experiment="next-item",kind="click",variant="engine"} '
        f"{float(clicked['engine'])}"
    )
    assert line in metrics


def test_assignment_sticks_and_responses_carry_their_ids(client: TestClient) -> None:
    first = client.get("/recommendations", params={"user_id": "u3", "count": 3}).json()
    for _ in range(5):
        again = client.get("/recommendations", params={"user_id": "u3", "count": 3}).json()
        assert again["variant"] == first["variant"], "a user stays in their variant"
        assert again["recommendation_id"] != first["recommendation_id"]
    by_session = client.get("/recommendations", params={"session_id": "s9"}).json()
    assert by_session["variant"] in ("popular", "engine")
    assert client.get("/popular").json()["variant"] is None


def test_without_experiments_responses_have_an_id_and_no_variant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECO_EXPERIMENTS", raising=False)
    with TestClient(create_app(EmbeddedSettings(data_dir=tmp_path / "plain"))) as c:
        body = c.get("/recommendations", params={"user_id": "anyone"}).json()
        assert body["variant"] is None
        assert body["experiment"] is None
        assert len(body["recommendation_id"]) == 32
        assert c.get("/experiments").json() == {"experiments": []}
        assert c.app.state.impressions is None  # type: ignore[attr-defined]
