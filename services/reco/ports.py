"""The narrow interfaces between the engine and its backends.

One adapter per backend implements each (``reco.adapters``): the event log (embedded SQLite
or Kafka), the feature store (in-memory or Redis) and the catalog (SQLite or PostgreSQL).
The same test suite runs against every adapter of an interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from reco.catalog import Item, ItemIn
from reco.events import Event
from reco.signals import FeatureDelta, SessionState, UserProfile

Scored = list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Record:
    """One event-log record: where it sits and the encoded event."""

    partition: int
    offset: int
    key: str | None
    value: bytes


def span_of(records: Sequence[Record]) -> str:
    """Where a batch sits in the log, for messages: ``partition 0 offsets 10-19, ...``."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for r in records:
        first.setdefault(r.partition, r.offset)
        last[r.partition] = r.offset
    return ", ".join(f"partition {p} offsets {first[p]}-{last[p]}" for p in sorted(first))


@runtime_checkable
class EventProducer(Protocol):
    def produce(self, events: Sequence[Event]) -> None:
        """Append ``events``; when this returns they are durable. Raises BackendUnavailable."""

    def ready(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class EventConsumer(Protocol):
    """A member of a consumer group reading the event log in batches."""

    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    def seek(self, offsets: Mapping[int, int]) -> None:
        """Continue at the given offset per partition (the next record to read); partitions
        not listed start from the beginning of the log."""

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Record the group's progress: per partition, the offset of the next record."""

    def assignments(self) -> int:
        """How many times partitions were assigned to this member so far. When it changes,
        partitions may have come from another member: the processor re-reads the store's
        applied offsets before trusting its own copy."""

    def lag(self) -> dict[int, int]:
        """Records per partition between the group's committed offset and the log's end."""

    def dead_letter(self, record: Record, reason: str) -> None:
        """Keep a record that cannot be applied, with why, out of the way of the stream."""

    def close(self) -> None: ...


class ApplyOutcome(Enum):
    """What a feature store did with a batch (see ``FeatureStore.apply``)."""

    APPLIED = "applied"
    STALE = "stale"
    """Refused: the store is already past the batch's start (another writer got there)."""
    RESET = "reset"
    """Refused: the store has lost what the batch builds on (an emptied Redis)."""
    OTHER_LANDMARK = "other_landmark"
    """Refused: the batch was folded against another decay landmark than the store's (a
    second processor set the first one, or moved it, after this one read it); fold again."""


@dataclass(slots=True)
class Related:
    """The strongest co-viewed and following items of one item, strongest first."""

    coview: Scored = field(default_factory=list)
    sequence: Scored = field(default_factory=list)


@dataclass(slots=True)
class RecoInputs:
    """All a recommendation reads from the feature store, fetched in one call."""

    context: list[str]
    """The user's or session's recent items, most recent first."""
    purchases: list[str]
    related: dict[str, Related]
    popular: Scored
    version: int = 0
    """Changes whenever the user's or session's features change (response cache key)."""
    neighbours: Scored = field(default_factory=list)
    """Items of the sessions most like the current one, strongest first (empty unless
    asked for): see ``reco.signals.neighbours``."""
    recent: Scored = field(default_factory=list)
    """The strongest items by weight in the time bucket asked for (``reco.signals.trend``),
    as many as ``popular``; empty unless asked for."""
    recent_before: Scored = field(default_factory=list)
    """The same of the bucket before it."""


@runtime_checkable
class FeatureStore(Protocol):
    """The features. The processor is its only writer; the api only reads."""

    # -- processor side --------------------------------------------------------------
    def applied_offsets(self) -> dict[int, int]:
        """Per partition, the offset after the last record whose effects are stored."""

    def landmark(self) -> float | None:
        """The forward-decay landmark the stored values are relative to, once set."""

    def load_states(
        self, users: Iterable[str], sessions: Iterable[str]
    ) -> tuple[dict[str, UserProfile], dict[str, SessionState]]:
        """Stored profiles of ``users``; states of ``sessions`` and of their current sessions."""

    def unseen(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among ``event_ids`` not applied yet (within the dedupe window)."""

    def apply(self, delta: FeatureDelta) -> ApplyOutcome:
        """Write the batch's features and its offsets atomically: all of it or none.

        A compare-and-set on the offsets: for each partition of ``delta.offsets`` the store
        must be exactly at ``delta.base_offsets`` (absent: nothing applied yet), else the
        batch is refused whole, as ``STALE`` (the store is ahead) or ``RESET`` (it lost
        what it had). A batch folded against another landmark than the store's is refused
        as ``OTHER_LANDMARK``; an empty store takes the batch's."""

    def rescale(
        self,
        landmark: float,
        coview_factor: float,
        popularity_factor: float,
        *,
        from_landmark: float | None = None,
    ) -> None:
        """Move the decay landmark, multiplying every stored value by its signal's factor.

        The factors are relative to ``from_landmark`` when given: a store whose landmark is
        another one by then (a second processor moved it first) is left as it is."""

    def reset(self) -> None:
        """Delete every feature and offset: a rebuild starts from nothing."""

    # -- api side ----------------------------------------------------------------------
    def recommendation_inputs(
        self,
        *,
        user_id: str | None,
        session_id: str | None,
        context_items: int,
        related_per_item: int,
        popular: int,
        category: str | None,
        neighbour_sample: int = 0,
        neighbour_k: int = 0,
        recent_bucket: int | None = None,
    ) -> RecoInputs:
        """Everything a recommendation reads, in one call (a few pipelined round trips of
        bounded reads on a remote store). With ``neighbour_k > 0`` it includes the session
        neighbours of the session's (else the user's) ``context_items`` most recent items:
        ``neighbour_sample`` candidates, the ``neighbour_k`` nearest. With
        ``recent_bucket``, the heads of that time bucket's and the one before's recent
        weights (``reco.signals.trend``). (A longer query would
        read more index lists per request, for neighbours matched on items long past.)"""

    def neighbours(
        self, items: Sequence[str], *, exclude: str | None, sample: int, k: int
    ) -> Scored:
        """Session-neighbour scores for ``items`` (oldest first), leaving out the session
        ``exclude``: what ``recommendation_inputs`` computes, for callers that hold the
        session's items themselves (the evaluation's frozen model)."""

    def related(self, item_id: str, limit: int) -> Related: ...

    def popular(self, limit: int, category: str | None = None) -> Scored: ...

    def experiment_counts(self) -> dict[str, int]:
        """The experiments' counters, ``<experiment>/<variant>/<kind>`` -> count: impressions
        and the events attributed to them (``reco.experiments``), written with the batches."""

    def snapshot(self) -> dict[str, Any]:
        """Every feature in a canonical form, to compare two stores."""

    def ready(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class Catalog(Protocol):
    def upsert(self, items: Sequence[ItemIn]) -> list[Item]: ...

    def get(self, item_id: str) -> Item | None: ...

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]: ...

    def count(self) -> int: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class EventArchive(Protocol):
    """Every event, kept for training and rebuilds; writes are idempotent per log position."""

    def write(self, records: Sequence[tuple[Record, Event]]) -> int:
        """Archive a batch in one transaction; return how many were not archived before."""

    def count(self) -> int: ...

    def iter_events(self, batch: int = 10_000) -> Iterator[tuple[Record, Event]]:
        """Every archived event in time order, with the log position it came from."""

    def iter_distinct_events(self, batch: int = 10_000) -> Iterator[tuple[Record, Event, int]]:
        """Each ``event_id`` once (its first copy by log position), in time order, with how
        many copies are archived: the events as the processor applied them."""

    def ready(self) -> bool: ...

    def close(self) -> None: ...


def offsets_check(stored: Mapping[int, int], delta: FeatureDelta) -> ApplyOutcome:
    """The compare-and-set of ``FeatureStore.apply``, for stores that run it in Python."""
    for partition in delta.offsets:
        have = stored.get(partition)
        want = delta.base_offsets.get(partition)
        if have == want:
            continue
        if have is None or (want is not None and have < want):
            return ApplyOutcome.RESET
        return ApplyOutcome.STALE
    return ApplyOutcome.APPLIED


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One trained model as the model store records it (the artifact is read separately)."""

    version: int
    kind: str
    created_at: float
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    size_bytes: int = 0


@runtime_checkable
class ModelStore(Protocol):
    """Trained models, versioned: ``reco train`` publishes, every api replica loads the
    latest. Versions only grow, so "newer than the one I serve" is a comparison."""

    def publish(
        self,
        kind: str,
        artifact: bytes,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
    ) -> ModelVersion:
        """Store a new version whole (all of it or nothing) and return it."""

    def latest(self, kind: str) -> ModelVersion | None: ...

    def versions(self, kind: str) -> list[ModelVersion]:
        """Every stored version of ``kind``, newest first."""

    def artifact(self, version: int) -> bytes:
        """The bytes published as ``version``; raises ``KeyError`` if it is not stored."""

    def prune(self, kind: str, keep: int) -> int:
        """Delete all but the ``keep`` newest versions of ``kind``; return how many went."""

    def ready(self) -> bool: ...

    def close(self) -> None: ...
