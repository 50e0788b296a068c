"""The processor over the embedded log and the in-memory store: batches, replays after a
crash, duplicates, poison records, the decay landmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from reco.adapters.memory_features import MemoryFeatureStore
from reco.adapters.sqlite_catalog import SqliteCatalog
from reco.adapters.sqlite_log import SqliteEventLog
from reco.catalog import ItemIn
from reco.events import Event
from reco.metrics import ProcessorMetrics
from reco.ports import Record
from reco.processor import Processor
from reco.settings import EngineSettings
from reco.signals.decay import MAX_EXPONENT

pytestmark = pytest.mark.unit


class Rig:
    def __init__(self, tmp: Path, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.log = SqliteEventLog(tmp / "events.db")
        self.producer = self.log.producer()
        self.catalog = SqliteCatalog(tmp / "catalog.db")
        self.metrics = ProcessorMetrics()
        self.store = MemoryFeatureStore()
        self.consumer = self.log.consumer("g")
        self.processor = self.new_processor(self.store)

    def new_processor(self, store: MemoryFeatureStore) -> Processor:
        p = Processor(self.consumer, store, self.catalog, self.settings, self.metrics, group="g")
        p.resume()
        return p

    def drain(self, processor: Processor | None = None, batch: int = 1000) -> None:
        p = processor or self.processor
        while p.run_once(batch, 0).records:
            pass


def ev(
    n: int, user: str, item: str, ts: float, kind: str = "view", eid: str | None = None
) -> Event:
    return Event(eid or f"e{n}", user, item, kind, ts, ts)


def test_batch_applies_and_commits(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.producer.produce([ev(0, "u", "a", 1.0), ev(1, "u", "b", 2.0)])
    result = rig.processor.run_once(100, 0)
    assert (result.records, result.applied) == (2, 2)
    assert rig.store.applied_offsets() == {0: 2}
    assert rig.consumer.committed() == {0: 2}
    assert rig.consumer.lag() == {0: 0}
    assert [i for i, _ in rig.store.related("a", 5).coview] == ["b"]


def test_lag_is_exported_per_partition_and_per_member_with_the_group(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.producer.produce([ev(0, "u", "a", 1.0), ev(1, "u", "b", 2.0), ev(2, "v", "c", 3.0)])
    rig.processor.run_once(1, 0)
    registry = rig.metrics.registry
    assert registry.get_sample_value("consumer_lag_records", {"group": "g", "partition": "0"}) == 2
    assert registry.get_sample_value("consumer_member_lag_records", {"group": "g"}) == 2
    rig.drain()
    assert registry.get_sample_value("consumer_member_lag_records", {"group": "g"}) == 0


def test_a_partition_given_away_leaves_the_lag_output() -> None:
    """Summed over a group's pods, the member lag is the group's lag: a partition a
    rebalance moved to another member is counted there only."""
    metrics = ProcessorMetrics()
    metrics.export_lag("g", {0: 5, 1: 7})
    metrics.export_lag("g", {1: 3})
    registry = metrics.registry
    assert (
        registry.get_sample_value("consumer_lag_records", {"group": "g", "partition": "0"}) is None
    )
    assert registry.get_sample_value("consumer_lag_records", {"group": "g", "partition": "1"}) == 3
    assert registry.get_sample_value("consumer_member_lag_records", {"group": "g"}) == 3


def test_crash_between_write_and_commit_counts_nothing_twice(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.producer.produce([ev(n, "u", f"i{n}", float(n)) for n in range(4)])
    rig.processor.run_once(100, 0)
    before = rig.store.snapshot()
    # The store has the batch, the group's commit is lost: the log is read again from 0.
    rig.consumer.commit({0: 0})
    rig.consumer.seek({0: 0})
    result = rig.processor.run_once(100, 0)
    assert (result.replayed, result.applied) == (4, 0)
    assert rig.store.snapshot() == before


def test_a_batch_another_writer_applied_is_committed_for_the_group(tmp_path: Path) -> None:
    """A member that lost its partitions applies its last batch after the new owner read
    the store: the new owner's batch is refused as stale, and it commits the store's
    offsets, so the lag the group reports (autoscalers read it) drops to 0 without waiting
    for new events."""
    rig = Rig(tmp_path)
    rig.producer.produce([ev(n, "u", f"i{n}", float(n)) for n in range(2)])
    rig.processor.run_once(100, 0)
    rig.producer.produce([ev(n, "u", f"i{n}", float(n)) for n in range(2, 4)])
    other = Processor(
        rig.log.consumer("other"), rig.store, rig.catalog, rig.settings, rig.metrics, group="o"
    )
    other.resume()
    assert other.run_once(100, 0).applied == 2  # the store now holds all 4
    assert rig.consumer.committed() == {0: 2}
    result = rig.processor.run_once(100, 0)
    assert (result.applied, result.refused) == (0, "stale")
    assert rig.consumer.committed() == {0: 4}
    assert rig.consumer.lag() == {0: 0}
    assert rig.processor.run_once(100, 0).records == 0


def test_restart_rebuilds_the_same_features(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    events = [ev(n, f"u{n % 3}", f"i{n % 7}", float(n * 60)) for n in range(60)]
    for start in range(0, 60, 7):
        rig.producer.produce(events[start : start + 7])
        rig.processor.run_once(5, 0)
    rig.drain()
    fresh = MemoryFeatureStore()
    rig.drain(rig.new_processor(fresh), batch=1000)
    a, b = rig.store.snapshot(), fresh.snapshot()
    assert a.keys() == b.keys()
    assert a["offsets"] == b["offsets"] == {0: 60}
    assert a["popularity"] == pytest.approx(b["popularity"])
    assert a["profiles"] == b["profiles"]
    assert a["sessions"] == b["sessions"]
    assert _rounded(a["coview"]) == _rounded(b["coview"])
    assert _rounded(a["sequence"]) == _rounded(b["sequence"])


def _rounded(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {i: round(v, 9) for i, v in inner.items()} for k, inner in table.items()}


def test_duplicate_event_ids_apply_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.producer.produce([ev(0, "u", "a", 1.0, eid="x"), ev(1, "u", "a", 1.0, eid="x")])
    rig.producer.produce([ev(2, "u", "a", 1.0, eid="x")])
    rig.drain(batch=1)
    assert rig.store.popular(1) == [("a", pytest.approx(1.0))]
    assert rig.metrics.events_skipped.labels("duplicate")._value.get() == 2


def test_poison_record_is_dead_lettered_and_the_stream_goes_on(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.producer.produce([ev(0, "u", "a", 1.0)])
    # A record no ingest would write, e.g. from another producer on the same topic.
    rig.producer._conn.execute("INSERT INTO events(key, value) VALUES ('u', x'7b6e6f')")
    rig.producer.produce([ev(2, "u", "b", 2.0)])
    rig.drain()
    assert rig.consumer.dead_letters()[0][0] == 1
    assert "undecodable" in rig.consumer.dead_letters()[0][1]
    assert rig.store.applied_offsets() == {0: 3}
    assert [i for i, _ in rig.store.related("a", 5).coview] == ["b"]


def test_category_comes_from_the_catalog_or_the_event(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.catalog.upsert([ItemIn(item_id="a", category="shoes")])
    b = Event("e1", "u", "b", "view", 1.0, 1.0, properties={"category": "hats"})
    rig.producer.produce([ev(0, "u", "a", 1.0), b])
    rig.drain()
    assert [i for i, _ in rig.store.popular(5, "shoes")] == ["a"]
    assert [i for i, _ in rig.store.popular(5, "hats")] == ["b"]


def test_landmark_moves_before_values_overflow_and_rankings_hold(tmp_path: Path) -> None:
    settings = EngineSettings(popularity_half_life_s=1.0, coview_half_life_s=1.0)
    rig = Rig(tmp_path, settings)
    rig.producer.produce([ev(n, f"u{n}", "a", 0.0) for n in range(3)] + [ev(3, "w", "b", 1.0)])
    rig.drain()
    assert [i for i, _ in rig.store.popular(2)] == ["a", "b"]  # 3 x 1 beats 1 x 2
    late = MAX_EXPONENT + 10
    rig.producer.produce([ev(4, "x", "c", late)])
    rig.drain()
    assert rig.store.landmark() == late
    popular = rig.store.popular(3)
    assert [i for i, _ in popular] == ["c", "a", "b"]
    assert all(v < 1e10 for _, v in popular)


def test_applied_offsets_skip_only_what_was_applied(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.producer.produce([ev(n, "u", f"i{n}", float(n)) for n in range(3)])
    rig.processor.run_once(2, 0)
    assert rig.store.applied_offsets() == {0: 2}
    records: list[Record] = rig.consumer.poll(10, 0)
    assert [r.offset for r in records] == [2]
