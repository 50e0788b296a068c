"""Datasets as the engine sees them, and the splits of the two protocols (EVALUATION.md).

Every event goes through the engine's own ``EventValidator`` once, at load: what the engine
would refuse (an event type it has no weight for, say) is counted and left out for every
system alike, so the engine and the baselines are scored on the same stream. Events without
a session get one from the engine's own rule (``reco.signals.session.assign_session``: a
30-minute gap by default), so the harness's sessions are exactly the engine's.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from reco.datasets import read_events
from reco.events import Event, EventValidator, InvalidEvent
from reco.settings import EngineSettings
from reco.signals.session import assign_session
from reco.signals.state import UserProfile

DAY_S = 86400.0


@dataclass(frozen=True)
class Loaded:
    """A file's valid events, each with a session, in time order (file order among equals)."""

    events: list[Event]
    read: int
    rejected: Counter[str] = field(default_factory=Counter)


def load(
    path: Path, fmt: str, settings: EngineSettings, *, prefix: str, progress: bool = False
) -> Loaded:
    """Read, validate and sessionize ``path``; event ids default to ``prefix`` + row number."""
    validator = EventValidator(settings.event_weights, settings.max_future_skew_s)
    now = time.time()
    events: list[Event] = []
    rejected: Counter[str] = Counter()
    read = 0
    rows = tqdm(read_events(path, fmt), desc=f"load {path.name}", unit="ev", disable=not progress)
    for read, raw in enumerate(rows, 1):
        raw.setdefault("event_id", f"{prefix}{read}")
        try:
            events.append(validator.validate(raw, now=now))
        except InvalidEvent as exc:
            rejected[str(exc).split(";")[0][:120]] += 1
    events.sort(key=lambda e: e.timestamp)
    return Loaded(sessionize(events, settings.session_gap_s), read, rejected)


def sessionize(events: Sequence[Event], gap_s: float) -> list[Event]:
    """Give each event the session the engine's processor would assign it (time order in)."""
    profiles: dict[str, UserProfile] = {}
    out = []
    for event in events:
        profile = profiles.get(event.user_id)
        if profile is None:
            profile = profiles[event.user_id] = UserProfile(event.user_id)
        session = assign_session(profile, event.timestamp, event.session_id, gap_s)
        if profile.last_ts is None or event.timestamp > profile.last_ts:
            profile.last_ts = event.timestamp
        out.append(event if event.session_id == session else replace(event, session_id=session))
    return out


def split_by_days(events: Sequence[Event], days: float) -> tuple[list[Event], list[Event]]:
    """``(T, S)``: a session is in S when its last event is within ``days`` of the last event."""
    if not events:
        return [], []
    cutoff = max(e.timestamp for e in events) - days * DAY_S
    last: dict[str, float] = {}
    for e in events:
        last[_sid(e)] = max(last.get(_sid(e), e.timestamp), e.timestamp)
    test = {s for s, ts in last.items() if ts > cutoff}
    return [e for e in events if _sid(e) not in test], [e for e in events if _sid(e) in test]


def _sid(event: Event) -> str:
    if event.session_id is None:
        raise ValueError(f"event {event.event_id} has no session; sessionize first")
    return event.session_id


@dataclass(frozen=True)
class NextData:
    """Protocol 1 after §1: the training events and the kept test sessions (each ≥ 2 events)."""

    train: list[Event]
    sessions: list[list[Event]]
    catalogue: frozenset[str]
    counts: dict[str, int]

    @property
    def predictions(self) -> int:
        return sum(len(s) - 1 for s in self.sessions)


def next_data(train: Sequence[Event], test: Sequence[Event]) -> NextData:
    """Catalogue = items of T; drop test events outside it, then test sessions shorter than 2.

    Sessions are kept in order of their first event (then id), events within a session in
    time order, stably: the online replay needs the sessions' true order in time.
    """
    catalogue = frozenset(e.item_id for e in train)
    by_session: defaultdict[str, list[Event]] = defaultdict(list)
    for e in test:
        by_session[_sid(e)].append(e)
    kept_events = [e for e in test if e.item_id in catalogue]
    grouped: defaultdict[str, list[Event]] = defaultdict(list)
    for e in kept_events:
        grouped[_sid(e)].append(e)
    sessions = [sorted(s, key=lambda e: e.timestamp) for s in grouped.values() if len(s) >= 2]
    sessions.sort(key=lambda s: (s[0].timestamp, _sid(s[0])))
    counts = {
        "train_events": len(train),
        "train_sessions": len({_sid(e) for e in train}),
        "test_events": len(test),
        "test_sessions": len(by_session),
        "test_events_unknown_item": len(test) - len(kept_events),
        "test_sessions_removed": len(by_session) - len(sessions),
        "test_events_kept": sum(len(s) for s in sessions),
        "test_sessions_kept": len(sessions),
    }
    return NextData(list(train), sessions, catalogue, counts)


@dataclass(frozen=True)
class UserData:
    """Protocol 2: per user, the last event held out; everything else is training."""

    train: list[Event]
    targets: list[Event]
    rated: dict[str, frozenset[str]]
    catalogue: frozenset[str]
    counts: dict[str, int]

    def universe(self, user: str) -> int:
        """How many candidates user ``user`` is ranked over: the items not rated yet."""
        return len(self.catalogue) - len(self.rated.get(user, frozenset()))


USER_SPLIT = (
    "leave-last-out: each user's events ordered by (timestamp, file order); the last one is "
    "that user's target, all other events of all users train the model (so training holds "
    "other users' later events); every rating counts as a positive; candidates are the items "
    "of the training events the user has not rated; users whose target item is absent from "
    "training or already rated are dropped"
)


def user_data(events: Iterable[Event]) -> UserData:
    """Hold out each user's last event (``events`` is in time order, file order in ties)."""
    ordered = list(events)
    last: dict[str, int] = {}
    for index, e in enumerate(ordered):
        last[e.user_id] = index
    held = set(last.values())
    train = [e for i, e in enumerate(ordered) if i not in held]
    catalogue = frozenset(e.item_id for e in train)
    rated: defaultdict[str, set[str]] = defaultdict(set)
    for e in train:
        rated[e.user_id].add(e.item_id)
    candidates = [ordered[i] for i in sorted(held)]
    targets = [
        e for e in candidates if e.item_id in catalogue and e.item_id not in rated[e.user_id]
    ]
    targets.sort(key=lambda e: e.user_id)
    counts = {
        "train_events": len(train),
        "users": len(last),
        "users_kept": len(targets),
        "users_target_not_in_training": sum(1 for e in candidates if e.item_id not in catalogue),
        "users_target_already_rated": sum(
            1 for e in candidates if e.item_id in catalogue and e.item_id in rated[e.user_id]
        ),
    }
    frozen = {u: frozenset(items) for u, items in rated.items()}
    return UserData(train, targets, frozen, catalogue, counts)
