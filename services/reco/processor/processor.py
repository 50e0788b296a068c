"""Consume events in batches, fold them into features, write, then commit.

Sinks first, offsets last. One batch is: poll records; skip those at offsets the store has
already applied (a replay after a crash); dead-letter undecodable ones; drop event ids the
store has seen (client retries); fold the rest into one ``FeatureDelta``; write it to the
store together with the offsets it reaches, in one atomic step; only then commit the offsets
to the log. A crash before the write loses nothing (the records are read again); a crash
after it counts nothing twice (the store's offsets say the records are applied).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from reco import tracing
from reco.events import Event, InvalidEvent
from reco.exceptions import BackendUnavailable
from reco.experiments import Attribution, Experiments, is_user_impression
from reco.metrics import ProcessorMetrics
from reco.ports import ApplyOutcome, Catalog, EventConsumer, FeatureStore, Record, span_of
from reco.settings import IMPRESSION_TYPE, EngineSettings
from reco.signals import FeatureDelta, SignalConfig, UserProfile, apply_event
from reco.signals.decay import MAX_EXPONENT, ForwardDecay

log = logging.getLogger(__name__)

_FOLDS = 3
"""Folds of one batch against a landmark another processor keeps moving before giving up."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    records: int
    applied: int
    replayed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    refused: str | None = None


class Processor:
    def __init__(
        self,
        consumer: EventConsumer,
        store: FeatureStore,
        catalog: Catalog,
        settings: EngineSettings,
        metrics: ProcessorMetrics,
        *,
        group: str = "reco-processor",
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._catalog = catalog
        self._settings = settings
        self._cfg = SignalConfig.from_settings(settings)
        self._attribution = Attribution(Experiments(settings.experiments))
        self._metrics = metrics
        self._group = group
        self._applied: dict[int, int] = {}
        self._assignments = -1

    def resume(self) -> None:
        """Continue where the feature store's effects end (from the start for an empty store)."""
        self._applied = self._store.applied_offsets()
        self._assignments = self._consumer.assignments()
        self._consumer.seek(self._applied)
        log.info("processor %s resumes at offsets %s", self._group, self._applied or "start")

    def run_once(self, max_records: int, timeout_s: float) -> BatchResult:
        records = self._consumer.poll(max_records, timeout_s)
        if self._consumer.assignments() != self._assignments:
            self._reassigned()
        if not records:
            self._export_lag()
            return BatchResult(0, 0)
        started = time.perf_counter()
        try:
            result = self.process(records)
        except BackendUnavailable as exc:
            exc.add_note(f"batch of {len(records)} records at {span_of(records)}")
            raise
        self._metrics.processor_batch_seconds.observe(time.perf_counter() - started)
        self._export_lag()
        return result

    def _reassigned(self) -> None:
        """Partitions came from another member: trust the store's offsets, not our copy,
        and commit them for the group. A member killed between its store write and its
        commit leaves the group's offsets behind the store; with nothing new to read this
        member would never commit, and the lag the group reports (to us, to an autoscaler
        reading the broker) would stay at what was applied but not committed."""
        self._assignments = self._consumer.assignments()
        self._applied = self._store.applied_offsets()
        self._consumer.commit(self._applied)

    def process(self, records: Sequence[Record]) -> BatchResult:
        """Apply one batch of records, then commit it (the body of ``run_once``)."""
        read = {r.partition: r.offset + 1 for r in records}
        fresh = [r for r in records if r.offset >= self._applied.get(r.partition, 0)]
        replayed = len(records) - len(fresh)
        events, dead = self._decode(fresh)
        events, duplicates = self._dedupe(events)

        with tracing.batch_span(
            "reco.processor.batch", (e.trace for e in events), records=len(records)
        ):
            for _ in range(_FOLDS):
                delta = self._fold(events)
                delta.offsets = {r.partition: r.offset + 1 for r in fresh}
                delta.base_offsets = {
                    p: self._applied[p] for p in delta.offsets if p in self._applied
                }
                outcome = self._store.apply(delta) if delta.offsets else ApplyOutcome.APPLIED
                if outcome is not ApplyOutcome.OTHER_LANDMARK:
                    break
                # Another processor set or moved the landmark since this one read it;
                # nothing was written, so fold the same events again against the new one.
                self._metrics.batches_refused.labels(outcome.value).inc()
        if outcome is not ApplyOutcome.APPLIED:
            self._refused(outcome, delta)
            return BatchResult(len(records), 0, refused=outcome.value)
        self._applied.update(delta.offsets)
        self._consumer.commit(read)

        m = self._metrics
        m.events_processed.inc(len(events))
        for key, count in delta.experiments.items():
            m.experiment_events.labels(*key.split("/")).inc(count)
        if replayed:
            m.events_skipped.labels("replayed").inc(replayed)
        if duplicates:
            m.events_skipped.labels("duplicate").inc(duplicates)
        if dead:
            m.events_skipped.labels("dead_letter").inc(dead)
        return BatchResult(len(records), len(events), replayed, duplicates, dead)

    def _refused(self, outcome: ApplyOutcome, delta: FeatureDelta) -> None:
        """Nothing was written and nothing is committed; re-read from where the store is."""
        if outcome is not ApplyOutcome.OTHER_LANDMARK:
            self._metrics.batches_refused.labels(outcome.value).inc()
        if outcome is ApplyOutcome.OTHER_LANDMARK:
            raise BackendUnavailable(
                f"processor {self._group}: the feature store refused {_FOLDS} folds of one "
                "batch in a row as built against another decay landmark (another processor "
                "set it, or a landmark move is under way); retrying the batch"
            )
        if outcome is ApplyOutcome.RESET:
            log.warning(
                "processor %s: the feature store lost its state (expected offsets %s): "
                "rebuilding it from the start of the log",
                self._group,
                delta.base_offsets,
            )
            self.resume()
            return
        log.warning(
            "processor %s: the feature store is past this batch (offsets %s); "
            "another writer applied it, continuing from the store's offsets",
            self._group,
            delta.base_offsets,
        )
        self.resume()
        # The other writer (a member that lost these partitions with its last batch in
        # flight) could not commit what it applied: commit it for the group, or the lag
        # autoscalers read from the broker stays up until new events come.
        self._consumer.commit({p: self._applied[p] for p in delta.offsets if p in self._applied})

    def _decode(self, records: Sequence[Record]) -> tuple[list[Event], int]:
        events: list[Event] = []
        dead = 0
        for record in records:
            try:
                events.append(Event.from_json(record.value))
            except InvalidEvent as exc:
                self._consumer.dead_letter(record, str(exc))
                dead += 1
        return events, dead

    def _dedupe(self, events: list[Event]) -> tuple[list[Event], int]:
        unseen = self._store.unseen([e.event_id for e in events])
        kept: list[Event] = []
        for event in events:
            if event.event_id in unseen:
                unseen.discard(event.event_id)
                kept.append(event)
        return kept, len(events) - len(kept)

    def _fold(self, events: list[Event]) -> FeatureDelta:
        landmark = self._landmark(events)
        delta = FeatureDelta(landmark=landmark)
        if not events:
            return delta
        interactions = [e for e in events if e.type != IMPRESSION_TYPE]
        profiles, sessions = self._store.load_states(
            {e.user_id for e in events if e.type != IMPRESSION_TYPE or is_user_impression(e)},
            {e.session_id for e in interactions if e.session_id},
        )
        categories = self._categories(interactions)
        attribution = self._attribution
        for event in events:
            if event.type == IMPRESSION_TYPE:
                # A session's impression is counted only; a user's is kept in their profile.
                user = is_user_impression(event)
                attribution.impression(delta, event, _profile(profiles, event) if user else None)
                delta.event_ids.append(event.event_id)
                continue
            profile = _profile(profiles, event)
            attribution.interaction(delta, event, profile)
            category = event.properties.get("category") or categories.get(event.item_id)
            apply_event(delta, event, profile, sessions, _as_category(category), self._cfg)
        return delta

    def _categories(self, events: list[Event]) -> dict[str, str | None]:
        wanted = {e.item_id for e in events if not e.properties.get("category")}
        return {i: item.category for i, item in self._catalog.get_many(wanted).items()}

    def _landmark(self, events: list[Event]) -> float:
        """The store's decay landmark, set by the first batch and moved before it overflows.

        Several processors share the store: the first batch applied sets the landmark, and
        one that moves it does so only from the landmark it read (a compare-and-set), so
        two processors moving it at once move it once; each then folds against what the
        store holds."""
        current = self._store.landmark()
        if not events:
            return current if current is not None else 0.0
        if current is None:
            return min(e.timestamp for e in events)
        latest = max(e.timestamp for e in events)
        shortest = min(self._cfg.coview_half_life_s, self._cfg.popularity_half_life_s)
        if (latest - current) / shortest <= MAX_EXPONENT:
            return current
        coview = ForwardDecay(self._cfg.coview_half_life_s, current).rescale_factor(latest)
        pop = ForwardDecay(self._cfg.popularity_half_life_s, current).rescale_factor(latest)
        log.info("moving the decay landmark from %.0f to %.0f", current, latest)
        self._store.rescale(latest, coview, pop, from_landmark=current)
        moved = self._store.landmark()
        return latest if moved is None else moved

    def _export_lag(self) -> None:
        self._metrics.export_lag(self._group, self._consumer.lag())


def _profile(profiles: dict[str, UserProfile], event: Event) -> UserProfile:
    """The event's user's profile in the batch's working set, a new one for a new user."""
    profile = profiles.get(event.user_id)
    if profile is None:
        profile = profiles[event.user_id] = UserProfile(event.user_id)
    return profile


def _as_category(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
