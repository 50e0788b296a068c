"""``reco tune``'s result as the api applies it: a document of request-time settings over
the configured ones, loaded from the model store (SQLite here, as in embedded mode) and
swapped in without a restart; what it cannot read it skips, keeping the last good one."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from reco.adapters.sqlite_models import SqliteModelStore
from reco.api.models import TunedSettingsHolder
from reco.metrics import ApiMetrics
from reco.settings import TUNED_SETTINGS, EngineSettings, SignalWeights, TunedSettings

pytestmark = pytest.mark.unit


def test_a_result_sets_only_what_it_names() -> None:
    base = EngineSettings(context_items=7, neighbour_k=30)
    tuned = TunedSettings(weights=SignalWeights(coview=0, sequence=2), history_decay=0.8)

    applied = tuned.apply(base)

    assert applied.weights.coview == 0
    assert applied.weights.sequence == 2
    assert applied.history_decay == 0.8
    assert (applied.context_items, applied.neighbour_k) == (7, 30), "unset: configured value"
    assert applied.event_weights == base.event_weights
    assert TunedSettings().apply(base) == base


def test_between_names_only_the_differences() -> None:
    base = EngineSettings()
    tuned = base.model_copy(update={"related_per_item": 25})

    diff = TunedSettings.between(base, tuned)

    assert diff.model_dump(exclude_none=True) == {"related_per_item": 25}
    assert diff.describe() == "related_per_item=25"
    assert diff.apply(base) == tuned
    assert TunedSettings.between(base, base).describe() == ""


@pytest.mark.parametrize(
    "document",
    [
        {"history_decay": 1.5},
        {"weights": {"coview": -1}},
        {"context_items": 0},
        {"max_sessions": 10},  # not a request-time setting: the store is built with it
    ],
)
def test_a_result_outside_the_settings_bounds_is_refused(document: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TunedSettings.model_validate(document)


def _publish(store: SqliteModelStore, document: bytes) -> int:
    return store.publish(TUNED_SETTINGS, document, params={}, metrics={}).version


def test_the_holder_swaps_in_each_newer_result_and_skips_a_broken_one(tmp_path: Path) -> None:
    store = SqliteModelStore(tmp_path / "models.db")
    metrics = ApiMetrics()
    base = EngineSettings(weights=SignalWeights(sequence=0))
    holder = TunedSettingsHolder(store, metrics, base)
    try:
        assert not holder.refresh()
        assert holder.settings() is base
        assert holder.version == 0

        good = _publish(store, orjson.dumps({"weights": {"sequence": 1.0, "coview": 0.5}}))
        assert holder.refresh()
        assert holder.version == good
        assert holder.settings().weights.sequence == 1.0
        assert metrics.tuned_settings_version._value.get() == good

        broken = _publish(store, b'{"weights": {"sequence": "lots"}}')
        assert not holder.refresh()
        assert holder.version == good, f"version {broken} skipped, {good} still applied"
        assert metrics.tuned_settings_load_failures._value.get() == 1
        assert not holder.refresh(), "a broken version is not read again"

        cleared = _publish(store, b"{}")
        assert holder.refresh()
        assert holder.version == cleared
        assert holder.settings() == base, "an empty result gives the configured settings back"
    finally:
        store.close()


def test_a_replica_told_to_ignore_results_serves_its_configured_settings(tmp_path: Path) -> None:
    store = SqliteModelStore(tmp_path / "models.db")
    try:
        _publish(store, orjson.dumps({"context_items": 3}))
        base = EngineSettings(tuned_settings=False)
        holder = TunedSettingsHolder(store, ApiMetrics(), base)
        assert not holder.refresh()
        assert holder.settings() is base
    finally:
        store.close()
