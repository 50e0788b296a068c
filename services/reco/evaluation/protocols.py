"""The two protocols of EVALUATION.md as replays of events into a ``System``.

**next** (session-based next item). Each kept test session ``e_1 … e_L`` is replayed under a
fresh session id; after delivering ``e_t`` (t < L) the harness asks for a ranking, and only
then reads ``item(e_{t+1})``, the target, to score it. The harness alone holds the test data,
so a system never sees an event before the step it belongs to.

* *static*: the model learnt from ``T`` is frozen (the system was fitted with
  ``online=False``); sessions are replayed one after another, each from an empty state.
* *online*: the system keeps learning from every replayed event, as in production. The
  test events are delivered in time order across sessions (ties: session order, then
  position), not session after session: replaying a whole session before the next would let
  the model learn from another session's events that happen later in time than the
  prediction being made. Each session still starts from an empty session state.

**user** (MovieLens-style): the system learns from the training events and then ranks, for
each user, every training item the user has not rated; the target is the held-out event.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tqdm import tqdm

from reco.evaluation.data import NextData, UserData
from reco.evaluation.metrics import Scoreboard, locate
from reco.evaluation.systems import System
from reco.events import Event

TIE_MARGIN = 30
"""Items asked for beyond ``k``: a tie group that starts within the top ``k`` is then seen
whole unless it is longer than this (such predictions are counted as ``open_ties``)."""


@dataclass
class Outcome:
    """One system's run: its scores and its clocks."""

    name: str
    board: Scoreboard
    build_s: float = 0.0
    rec_s: list[float] = field(default_factory=list)
    event_s: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    """What the system says of its own fitting (the ranker's training figures, say)."""

    def timing(self) -> dict[str, float]:
        rec = sorted(self.rec_s)
        return {
            "build_s": round(self.build_s, 3),
            "ms_per_rec_mean": _ms(statistics.fmean(rec)) if rec else 0.0,
            "ms_per_rec_p50": _ms(_percentile(rec, 0.50)),
            "ms_per_rec_p99": _ms(_percentile(rec, 0.99)),
            "ms_per_event_mean": _ms(statistics.fmean(self.event_s)) if self.event_s else 0.0,
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def fitted(system: System, train: Sequence[Event], *, online: bool, kmax: int) -> Outcome:
    """A new outcome for ``system``, once it has been fitted on ``train`` (timed: build_s)."""
    outcome = Outcome(system.name, Scoreboard(kmax))
    started = time.perf_counter()
    system.fit(train, online=online)
    outcome.build_s = time.perf_counter() - started
    details = getattr(system, "details", None)
    if details is not None:
        outcome.details = details()
    return outcome


def progress_bar(total: int, desc: str, unit: str, progress: bool) -> tqdm[Any]:
    """The replay's progress on stderr, shown only when ``progress``."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress)


def run_next(
    system: System, data: NextData, *, online: bool, kmax: int, progress: bool = False
) -> Outcome:
    """Fit on ``T``, replay the test sessions, score every prediction."""
    outcome = fitted(system, data.train, online=online, kmax=kmax)
    universe = len(data.catalogue)
    mode = "online" if online else "static"
    bar = progress_bar(data.predictions, f"{system.name} ({mode})", "pred", progress)
    with bar:
        for session, step, event in _deliveries(data.sessions, online=online):
            sid = f"eval:{session}"
            clock = time.perf_counter()
            system.observe(replay_event(event, sid, step))
            outcome.event_s.append(time.perf_counter() - clock)
            events = data.sessions[session]
            if step + 1 == len(events):
                system.end_session(sid)
                continue
            clock = time.perf_counter()
            ranking = system.rank(
                session_id=sid, user_id=event.user_id, n=kmax + TIE_MARGIN, exclude=frozenset()
            )
            outcome.rec_s.append(time.perf_counter() - clock)
            target = events[step + 1].item_id  # read only now that the ranking is fixed
            outcome.board.add(session, locate(ranking, target, universe, kmax))
            bar.update()
    return outcome


def _deliveries(sessions: list[list[Event]], *, online: bool) -> Iterator[tuple[int, int, Event]]:
    """``(session index, position, event)`` in the order the replay delivers them."""
    if not online:
        for index, events in enumerate(sessions):
            for step, event in enumerate(events):
                yield index, step, event
        return
    deliveries = [
        (e.timestamp, index, step, e)
        for index, events in enumerate(sessions)
        for step, e in enumerate(events)
    ]
    deliveries.sort(key=lambda d: d[:3])
    for _, index, step, event in deliveries:
        yield index, step, event


def replay_event(event: Event, session_id: str, index: int) -> Event:
    """``event`` under the replay's fresh session id, with an id no training event has (the
    processor drops an event whose id it has seen)."""
    return replace(event, session_id=session_id, event_id=f"{session_id}:{index}")


def run_user(system: System, data: UserData, *, kmax: int, progress: bool = False) -> Outcome:
    """Fit on the training events, then rank each user's unrated items once."""
    outcome = fitted(system, data.train, online=False, kmax=kmax)
    bar = progress_bar(len(data.targets), f"{system.name} (user)", "user", progress)
    with bar:
        for index, target in enumerate(data.targets):
            rated = data.rated.get(target.user_id, frozenset())
            clock = time.perf_counter()
            ranking = system.rank(
                session_id=None, user_id=target.user_id, n=kmax + TIE_MARGIN, exclude=rated
            )
            outcome.rec_s.append(time.perf_counter() - clock)
            universe = data.universe(target.user_id)
            outcome.board.add(index, locate(ranking.without(rated), target.item_id, universe, kmax))
            bar.update()
    return outcome
