"""One event's effect on the features, accumulated over a batch into a ``FeatureDelta``."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from reco.events import Event
from reco.settings import EngineSettings
from reco.signals.coview import coview_partners
from reco.signals.history import remember
from reco.signals.sequence import transitions
from reco.signals.session import assign_session
from reco.signals.state import SessionState, UserProfile
from reco.signals.trend import bucket_of


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """The settings the signals read, copied out of ``EngineSettings`` once."""

    event_weights: dict[str, float]
    session_gap_s: float
    coview_window: int
    sequence_steps: int
    max_recent_items: int
    max_purchases: int
    max_session_items: int
    coview_half_life_s: float
    popularity_half_life_s: float
    trend_window_s: float = 3600.0
    purchase_type: str = "purchase"

    @classmethod
    def from_settings(cls, s: EngineSettings) -> SignalConfig:
        return cls(
            event_weights=dict(s.event_weights),
            session_gap_s=s.session_gap_s,
            coview_window=s.coview_window,
            sequence_steps=s.sequence_steps,
            max_recent_items=s.max_recent_items,
            max_purchases=s.max_purchases,
            max_session_items=s.max_session_items,
            coview_half_life_s=s.coview_half_life_s,
            popularity_half_life_s=s.popularity_half_life_s,
            trend_window_s=s.trend_window_s,
        )


def _nested() -> defaultdict[str, defaultdict[str, float]]:
    return defaultdict(lambda: defaultdict(float))


@dataclass
class FeatureDelta:
    """Increments and replaced states of one batch; a store applies it atomically.

    Co-view, sequence and popularity values are forward-decayed against ``landmark``.
    ``offsets`` holds, per partition with records applied in this batch, the offset after
    its last record: the store keeps it with the features so that a replayed record is
    recognised and skipped. ``base_offsets`` holds, for the same partitions, where the
    writer believes the store is before this batch (absent: nothing applied yet); the store
    refuses the batch if it is elsewhere.
    """

    landmark: float
    coview: defaultdict[str, defaultdict[str, float]] = field(default_factory=_nested)
    sequence: defaultdict[str, defaultdict[str, float]] = field(default_factory=_nested)
    popularity: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    category_popularity: defaultdict[str, defaultdict[str, float]] = field(default_factory=_nested)
    recent: defaultdict[int, defaultdict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    """Time bucket -> item -> event weight in it, undecayed (``reco.signals.trend``)."""
    profiles: dict[str, UserProfile] = field(default_factory=dict)
    sessions: dict[str, SessionState] = field(default_factory=dict)
    neighbour_index: defaultdict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    """item -> {session: time it last held the item}: entries of the item → sessions index
    (see ``reco.signals.neighbours``), the later time replacing the stored one."""
    event_ids: list[str] = field(default_factory=list)
    experiments: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    """``experiment/variant/kind`` -> impressions or attributed events of this batch
    (``reco.experiments``), added to the store's counters."""
    offsets: dict[int, int] = field(default_factory=dict)
    base_offsets: dict[int, int] = field(default_factory=dict)
    events: int = 0


def apply_event(
    delta: FeatureDelta,
    event: Event,
    profile: UserProfile,
    sessions: MutableMapping[str, SessionState],
    category: str | None,
    cfg: SignalConfig,
) -> SessionState:
    """Fold ``event`` into ``delta``; updates ``profile`` and returns the event's session.

    ``sessions`` is the batch's working set of session states, prefilled by the caller with
    the stored states of the sessions its events may continue; a new session starts empty.
    """
    weight = cfg.event_weights.get(event.type, 0.0)
    session_id = assign_session(profile, event.timestamp, event.session_id, cfg.session_gap_s)
    session = sessions.get(session_id)
    if session is None:
        session = sessions[session_id] = SessionState(session_id=session_id, user_id=event.user_id)

    item = event.item_id
    if weight > 0:
        # One exp2 per half-life and event: every value this event adds shares the factor.
        cv = math.exp2((event.timestamp - delta.landmark) / cfg.coview_half_life_s)
        pair_weight = weight * cv
        coview = delta.coview
        for other in coview_partners(session.items, item, cfg.coview_window):
            coview[item][other] += pair_weight
            coview[other][item] += pair_weight
        following = delta.sequence
        for previous, w in transitions(session.items, item, cfg.sequence_steps):
            following[previous][item] += w * cv

        pop = weight * math.exp2((event.timestamp - delta.landmark) / cfg.popularity_half_life_s)
        delta.popularity[item] += pop
        if category:
            delta.category_popularity[category][item] += pop
        delta.recent[bucket_of(event.timestamp, cfg.trend_window_s)][item] += weight

    session.items.append(item)
    del session.items[: -cfg.max_session_items]
    session.last_ts = max(session.last_ts, event.timestamp)
    # One entry per event: re-scoring every item of the session at each of its events
    # would cost a write per session item (50) instead of one, for a ranking of neighbours
    # by recency that differs only in which of a session's items was its last.
    delta.neighbour_index[item][session_id] = session.last_ts
    remember(
        profile,
        item,
        event.timestamp,
        weight,
        purchase=event.type == cfg.purchase_type,
        max_recent=cfg.max_recent_items,
        max_purchases=cfg.max_purchases,
    )
    if profile.last_ts is None or event.timestamp > profile.last_ts:
        profile.last_ts = event.timestamp

    delta.profiles[profile.user_id] = profile
    delta.sessions[session_id] = session
    delta.event_ids.append(event.event_id)
    delta.events += 1
    return session
