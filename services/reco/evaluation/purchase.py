"""The "next" protocol's purchase target: rank the purchased item just before each purchase.

A variant of next-item prediction for streams with event types (docs/event-types.md):

* **Split** by event time, not by session: ``T`` holds the events up to the cut-off, ``S``
  the later ones (a session that spans the cut-off is continued, not dropped). So no
  training event is later than any prediction; ``--test FILE`` gives ``S`` as is.
* **Prediction points**: every purchase event of ``S``. Just before one is delivered the
  system ranks; the target is the purchased item. The purchase is delivered afterwards, so
  it is part of what the next prediction has seen.
* **What the system has seen**, through its ordinary ``observe``: every event of ``T``,
  then the test events of every type before the purchase. A test event is replayed with
  its own session id (the engine's sessionization at load), so a session that began in
  ``T`` goes on. *static*: units are replayed one after another, each over the frozen
  model; *online*: all test events in time order (ties: unit, then position), the system
  learning from each.
* **Unit** of the replay and of the bootstrap: a test *session* (the ranking is asked for
  the session, whose prefix is the context) or a *user* (asked for the user, whose context
  is their whole history: training events and the test prefix). Taobao needs users: a
  third of its purchases open a 30-minute session, so a session prefix is empty there.
* **Candidates**: every item of ``T`` and ``S``, as a shop's catalogue lists items before
  anyone views them. Under §1's rule (the items of ``T`` only) most purchases of the small
  samples would be dropped: their items first appear after the cut-off.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from reco.evaluation.data import DAY_S
from reco.evaluation.metrics import locate
from reco.evaluation.protocols import TIE_MARGIN, Outcome, fitted, progress_bar
from reco.evaluation.protocols import _deliveries as next_order
from reco.evaluation.systems import System
from reco.events import Event

Unit = Literal["session", "user"]
PURCHASE = "purchase"

PURCHASE_SPLIT = (
    "by event time: S = the events less than {days:g} days before the dataset's last event, "
    "T = all earlier events (a session spanning the cut-off is continued in S)"
)


def split_by_time(events: Sequence[Event], days: float) -> tuple[list[Event], list[Event]]:
    """``(T, S)``: S holds the events within ``days`` of the last event, T the others."""
    if not events:
        return [], []
    cutoff = max(e.timestamp for e in events) - days * DAY_S
    return [e for e in events if e.timestamp <= cutoff], [e for e in events if e.timestamp > cutoff]


@dataclass(frozen=True)
class PurchaseData:
    """The training events and the test events grouped by unit, each unit in time order."""

    train: list[Event]
    units: list[list[Event]]
    unit: Unit
    catalogue: frozenset[str]
    counts: dict[str, int]

    @property
    def predictions(self) -> int:
        return sum(1 for events in self.units for e in events if e.type == PURCHASE)


def purchase_data(train: Sequence[Event], test: Sequence[Event], unit: Unit) -> PurchaseData:
    """Group ``test`` by session or user (units in order of their first event, then key)."""
    grouped: defaultdict[str, list[Event]] = defaultdict(list)
    for e in sorted(test, key=lambda e: e.timestamp):
        grouped[_key(e, unit)].append(e)
    units = sorted(grouped.values(), key=lambda u: (u[0].timestamp, _key(u[0], unit)))
    catalogue = frozenset(e.item_id for e in train) | frozenset(e.item_id for e in test)
    counts = {
        "train_events": len(train),
        "test_events": len(test),
        "test_units": len(units),
        "test_units_with_purchase": sum(1 for u in units if any(e.type == PURCHASE for e in u)),
    } | _describe(train, test)
    return PurchaseData(list(train), units, unit, catalogue, counts)


def _key(event: Event, unit: Unit) -> str:
    if unit == "user":
        return event.user_id
    if event.session_id is None:
        raise ValueError(f"event {event.event_id} has no session; sessionize first")
    return event.session_id


def _describe(train: Sequence[Event], test: Sequence[Event]) -> dict[str, int]:
    """What the prediction points have to go on (for the report, not used by the replay)."""
    trained = {e.item_id for e in train}
    by_user: defaultdict[str, set[str]] = defaultdict(set)
    by_session: defaultdict[str | None, set[str]] = defaultdict(set)
    for e in train:
        by_user[e.user_id].add(e.item_id)
        by_session[e.session_id].add(e.item_id)
    counts = dict.fromkeys(
        ("purchases", "item_in_train", "item_seen_by_user_before", "first_in_session"), 0
    )
    for e in sorted(test, key=lambda e: e.timestamp):
        if e.type == PURCHASE:
            counts["purchases"] += 1
            counts["item_in_train"] += e.item_id in trained
            counts["item_seen_by_user_before"] += e.item_id in by_user[e.user_id]
            counts["first_in_session"] += not by_session[e.session_id]
        by_user[e.user_id].add(e.item_id)
        by_session[e.session_id].add(e.item_id)
    return counts


def run_purchase(
    system: System, data: PurchaseData, *, online: bool, kmax: int, progress: bool = False
) -> Outcome:
    """Fit on ``T``, replay ``S``, and rank before every purchase."""
    outcome = fitted(system, data.train, online=online, kmax=kmax)
    universe = len(data.catalogue)
    mode = "online" if online else "static"
    bar = progress_bar(data.predictions, f"{system.name} (purchase, {mode})", "pred", progress)
    with bar:
        for unit, step, event in _deliveries(data.units, online=online):
            if event.type == PURCHASE:
                clock = time.perf_counter()
                ranking = system.rank(
                    session_id=event.session_id if data.unit == "session" else None,
                    user_id=event.user_id,
                    n=kmax + TIE_MARGIN,
                    exclude=frozenset(),
                )
                outcome.rec_s.append(time.perf_counter() - clock)
                # The purchase is delivered only below, once the ranking is fixed.
                outcome.board.add(unit, locate(ranking, event.item_id, universe, kmax))
                bar.update()
            clock = time.perf_counter()
            system.observe(event)
            outcome.event_s.append(time.perf_counter() - clock)
            events = data.units[unit]
            if step + 1 == len(events):
                for session in dict.fromkeys(e.session_id for e in events):
                    if session is not None:
                        system.end_session(session)
    return outcome


def _deliveries(units: list[list[Event]], *, online: bool) -> Iterator[tuple[int, int, Event]]:
    """``(unit index, position, event)`` in the next protocol's delivery order. Static mode
    skips the units without a purchase: over a frozen model they could change no prediction."""
    buying = {i for i, events in enumerate(units) if any(e.type == PURCHASE for e in events)}
    for index, step, event in next_order(units, online=online):
        if online or index in buying:
            yield index, step, event
