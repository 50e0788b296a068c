"""Training reads each event once, against the embedded SQLite log and the PostgreSQL archive.

A client that retries a request whose answer it lost sends the same events again, with
their ``event_id``: both copies reach the log, at two positions, and both are archived (the
archive keeps the log as it was). The processor applies the event once; ``reco train`` must
count it once too, keeping the first copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from reco.events import Event
from reco.ports import Record
from reco.settings import TrainSettings
from reco.train import run

Write = Callable[[Sequence[Event]], None]
Read = Callable[[], Iterator[tuple[Record, Event, int]]]


@dataclass
class Source:
    """What ``reco train`` reads, how to append to it, and settings that point at it."""

    write: Write
    read: Read
    settings: TrainSettings


def _sqlite(tmp_path: Path) -> Iterator[Source]:
    from reco.adapters.sqlite_log import SqliteEventLog

    log = SqliteEventLog(tmp_path / "events.db")
    producer = log.producer()
    try:
        yield Source(producer.produce, log.iter_distinct_events, TrainSettings(data_dir=tmp_path))
    finally:
        producer.close()


def _postgres(url: str) -> Iterator[Source]:
    from reco.adapters.postgres_archive import PostgresArchive

    archive = PostgresArchive.from_url(url)
    # Log positions as a partition gives them: each write goes on where the last one ended.
    position = [0]

    def write(events: Sequence[Event]) -> None:
        records = [Record(1, position[0] + n, e.user_id, e.to_json()) for n, e in enumerate(events)]
        position[0] += len(events)
        archive.write(list(zip(records, events, strict=True)))

    try:
        yield Source(write, archive.iter_distinct_events, TrainSettings(database_url=url))
    finally:
        archive.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("postgres", marks=pytest.mark.integration),
    ]
)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    if request.param == "sqlite":
        yield from _sqlite(tmp_path)
    else:
        yield from _postgres(request.getfixturevalue("pg_database"))


def _shop(users: int = 12) -> list[Event]:
    """Each user views three items of one of two aisles, a second apart."""
    aisles = (["tent", "stove", "lamp"], ["shoe", "laces", "socks"])
    return [
        Event(
            event_id=f"u{user}-{step}",
            user_id=f"u{user}",
            item_id=item,
            type="view",
            timestamp=1_767_225_600.0 + 60 * user + step,
            received_at=1_767_225_600.0 + 60 * user + step,
        )
        for user in range(users)
        for step, item in enumerate(aisles[user % 2])
    ]


def test_each_event_id_is_read_once_as_its_first_copy(source: Source) -> None:
    events = _shop(users=2)
    source.write(events)
    first = events[1]
    # The retry comes later in the log; its item differs only to tell the copies apart.
    retry = replace(first, item_id="changed-in-the-retry")
    source.write([retry, retry])

    read = [(event, copies) for _, event, copies in source.read()]

    assert [e.event_id for e, _ in read] == [e.event_id for e in events]
    assert {e.event_id: c for e, c in read} == {e.event_id: 3 if e is first else 1 for e in events}
    assert read[1][0] == first, "the first copy by log position is the one kept"


def test_reading_a_log_without_repeats_reads_every_event_once(source: Source) -> None:
    events = _shop()
    source.write(events)
    assert [(e, c) for _, e, c in source.read()] == [(e, 1) for e in events]


def test_train_counts_a_resent_event_once(source: Source) -> None:
    pytest.importorskip("implicit", reason="reco train needs the [train] extra (implicit)")
    events = _shop()
    source.write(events)
    source.write(events[4:6])  # a client retried one request of two events

    report = run(source.settings.model_copy(update={"epochs": 2}))

    assert report.version.metrics["events"] == len(events)
    assert report.version.metrics["duplicates_skipped"] == 2


@pytest.mark.unit
def test_the_embedded_log_skips_undecodable_records_without_merging_them(tmp_path: Path) -> None:
    import sqlite3

    from reco.adapters.sqlite_log import SqliteEventLog

    log = SqliteEventLog(tmp_path / "events.db")
    events = _shop(users=1)
    producer = log.producer()
    producer.produce(events[:1])
    producer.close()
    # Records no producer of ours writes, but a damaged or foreign log can hold: not JSON,
    # and JSON without an event_id. Each is its own group, not "copies" of one another.
    with sqlite3.connect(tmp_path / "events.db") as raw:
        raw.executemany(
            "INSERT INTO events(key, value) VALUES (?, ?)",
            [("u0", b"\xff not json"), ("u0", b"\xff not json"), ("u0", b'{"user_id": "u0"}')],
        )
    producer = log.producer()
    producer.produce(events[1:])
    producer.close()

    assert [(e, c) for _, e, c in log.iter_distinct_events()] == [(e, 1) for e in events]


def test_tune_searches_the_archive_and_publishes_next_to_the_models(source: Source) -> None:
    """``reco tune`` reads the same events as ``reco train`` (a re-sent copy once) and
    publishes its result in the same model store, where the api looks for it."""
    import time

    from reco import tune
    from reco.settings import TUNED_SETTINGS, SignalWeights, TuneSettings
    from tests.support.shops import ring_walks

    day = 86400.0
    rows = ring_walks(240, start=time.time() - 21 * day, every_s=20 * day / 240)
    events = [
        Event(r["event_id"], r["user_id"], r["item_id"], r["type"], r["timestamp"],
              r["timestamp"], r["session_id"])
        for r in rows
    ]  # fmt: skip
    source.write(events)
    source.write(events[-10:])  # a retried request: its copies count once
    settings = TuneSettings(
        **source.settings.model_dump(include={"data_dir", "database_url"}),
        weights=SignalWeights(sequence=0, neighbours=0),
        test_days=3,
    )

    report = tune.run(settings)

    assert report.published is not None
    assert report.changed["weights.sequence"][1] > 0
    models = tune.open_models(settings)
    try:
        latest = models.latest(TUNED_SETTINGS)
        assert latest == report.published
        assert latest.metrics["predictions"] == report.predictions > 0
    finally:
        models.close()
