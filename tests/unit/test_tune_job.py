"""``reco tune`` on a shop whose best weights are known (``tests.support.shops``): the search
finds the weight the configuration left out, publishes it only when it beats the served
settings beyond noise, starts the next run from what it published, and stops with what it
holds when its time budget is spent. The model store is SQLite, as in embedded mode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from reco.adapters.sqlite_models import SqliteModelStore
from reco.events import Event
from reco.settings import TUNED_SETTINGS, SignalWeights, TuneSettings
from reco.tune import NothingToTune, tune
from tests.support.shops import ring_walks

pytestmark = pytest.mark.unit

DAY = 86400.0
NO_SEQUENCE = SignalWeights(sequence=0, neighbours=0)


def ring_events(sessions: int = 240) -> list[Event]:
    start = time.time() - 30 * DAY
    rows = ring_walks(sessions, start=start, every_s=20 * DAY / sessions)
    return [
        Event(r["event_id"], r["user_id"], r["item_id"], r["type"], r["timestamp"],
              r["timestamp"], r["session_id"])
        for r in rows
    ]  # fmt: skip


@pytest.fixture
def models(tmp_path: Path) -> Iterator[SqliteModelStore]:
    store = SqliteModelStore(tmp_path / "models.db")
    yield store
    store.close()


def settings(**extra: object) -> TuneSettings:
    values: dict[str, object] = {"weights": NO_SEQUENCE, "test_days": 3, "budget_s": 300}
    return TuneSettings(**(values | extra))


def test_the_search_finds_the_weight_the_configuration_left_out(
    models: SqliteModelStore,
) -> None:
    report = tune(ring_events(), settings(), models)

    assert report.finished
    assert report.objective == "MRR@20"
    before, after = report.changed["weights.sequence"]
    assert before == 0
    assert after > 0
    value, low, high = report.figures["MRR@20"]["difference"]
    assert low > 0, f"better beyond noise: {value:+.3f} [{low:+.3f}, {high:+.3f}]"
    assert report.figures["MRR@20"]["chosen"][0] > 0.9, "the next ring item comes first"
    assert report.verdict.startswith("better")
    assert models.latest(TUNED_SETTINGS) is None, "tune() itself publishes nothing"


def test_a_published_result_is_where_the_next_search_starts(
    models: SqliteModelStore, tmp_path: Path
) -> None:
    from reco import tune as job

    (tmp_path / "events.db").touch()
    events = ring_events()
    first = job.run(settings(data_dir=tmp_path), events=events)
    assert first.published is not None
    document = orjson.loads(models.artifact(first.published.version))
    assert document["weights"]["sequence"] == first.chosen["weights.sequence"]
    assert first.published.params["chosen"] == first.chosen

    again = job.run(settings(data_dir=tmp_path), events=events)
    assert again.start["weights.sequence"] == first.chosen["weights.sequence"]
    assert again.published is None
    assert again.verdict.startswith("kept")
    assert models.latest(TUNED_SETTINGS) == first.published


def test_a_spent_budget_ends_the_search_with_the_point_it_holds(
    models: SqliteModelStore,
) -> None:
    report = tune(ring_events(), settings(budget_s=1e-6), models)

    assert not report.finished
    assert report.evaluations == 1, "only the start was scored"
    assert report.changed == {}
    assert "budget" in report.verdict


def test_a_log_without_a_test_window_says_what_to_change(models: SqliteModelStore) -> None:
    events = ring_events(60)
    # The last day holds one view: a session of one event predicts nothing.
    last = max(e.timestamp for e in events) + 2 * DAY
    events.append(Event("lone", "lone", "i1", "view", last, last, "lone"))
    with pytest.raises(NothingToTune, match="--test-days"):
        tune(events, settings(test_days=1), models)
    with pytest.raises(NothingToTune, match="no events"):
        tune([], settings(), models)
