"""Copy the event log into the archive in batches: write, then commit.

The archive's key is the log position, so a batch read again after a crash (written, not
yet committed) inserts nothing the second time. The archiver keeps the group's committed
offsets as its resume point: unlike the processor it needs no offsets inside its sink.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from reco.events import Event, InvalidEvent
from reco.exceptions import BackendUnavailable
from reco.metrics import ArchiverMetrics
from reco.ports import EventArchive, EventConsumer, Record, span_of
from reco.settings import IMPRESSION_TYPE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    records: int
    archived: int = 0
    dead_lettered: int = 0


class Archiver:
    def __init__(
        self,
        consumer: EventConsumer,
        archive: EventArchive,
        metrics: ArchiverMetrics,
        *,
        group: str = "reco-archiver",
    ) -> None:
        self._consumer = consumer
        self._archive = archive
        self._metrics = metrics
        self._group = group

    def resume(self) -> None:
        """Nothing to re-read: the consumer continues at the group's committed offsets."""

    def run_once(self, max_records: int, timeout_s: float) -> ArchiveResult:
        records = self._consumer.poll(max_records, timeout_s)
        if not records:
            self._export_lag()
            return ArchiveResult(0)
        pairs: list[tuple[Record, Event]] = []
        dead = 0
        for record in records:
            try:
                event = Event.from_json(record.value)
            except InvalidEvent as exc:
                self._consumer.dead_letter(record, str(exc))
                dead += 1
                continue
            # The api's impression records are the processor's to count; the archive keeps
            # what users did (docs/experiments.md).
            if event.type != IMPRESSION_TYPE:
                pairs.append((record, event))
        try:
            archived = self._archive.write(pairs) if pairs else 0
        except BackendUnavailable as exc:
            exc.add_note(f"batch of {len(records)} records at {span_of(records)}")
            raise
        self._consumer.commit({r.partition: r.offset + 1 for r in records})
        self._metrics.events_archived.inc(archived)
        self._export_lag()
        return ArchiveResult(len(records), archived, dead)

    def _export_lag(self) -> None:
        self._metrics.export_lag(self._group, self._consumer.lag())
