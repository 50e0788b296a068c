"""In-memory feature store: the embedded default, rebuilt from the event log at start.

A single lock serialises the processor's batch writes against the api's reads; both hold
it for microseconds to milliseconds, so one lock costs less than finer-grained schemes.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sortedcontainers import SortedList

from reco.adapters.caps import TRIM_SLACK
from reco.ports import ApplyOutcome, RecoInputs, Related, Scored, offsets_check
from reco.signals import FeatureDelta, SessionState, UserProfile
from reco.signals.neighbours import (
    Posting,
    neighbour_scores,
    query,
    select_neighbours,
)
from reco.signals.trend import slot_of


def _top(values: dict[str, float], n: int) -> Scored:
    return heapq.nlargest(n, values.items(), key=lambda kv: (kv[1], kv[0]))


def _trim(values: dict[str, float], cap: int) -> None:
    if len(values) > cap * TRIM_SLACK:
        keep = dict(_top(values, cap))
        values.clear()
        values.update(keep)


class _Ranking:
    """A popularity table in rank order, moved along by each write rather than re-sorted.

    Online, every event writes popularity and the next request reads its head: a re-sort
    costs O(n log n) on thousands of items, a move O(log n). The order is ``_top``'s, score
    then item id, both descending.
    """

    __slots__ = ("_entries", "_head")

    def __init__(self, table: dict[str, float]) -> None:
        self._entries = SortedList((score, item) for item, score in table.items())
        # The longest head read since the last write: between writes (static data, bursts
        # of requests) a read is then a slice, as with the sorted views.
        self._head: Scored = []

    def move(self, item: str, old: float | None, new: float) -> None:
        if old is not None:
            self._entries.remove((old, item))
        self._entries.add((new, item))
        self._head = []

    def drop_weakest(self, keep: int) -> list[str]:
        """Remove all but the ``keep`` strongest; the same ones ``_trim`` keeps."""
        excess = len(self._entries) - keep
        if excess <= 0:
            return []
        weakest: list[str] = [item for _, item in self._entries[:excess]]
        del self._entries[:excess]
        self._head = []
        return weakest

    def head(self, limit: int) -> Scored:
        if limit <= 0:
            return []
        head, entries = self._head, self._entries
        if len(head) < limit and len(head) < len(entries):
            start = max(len(entries) - limit, 0)
            head = self._head = [(item, score) for score, item in reversed(entries[start:])]
        return head[:limit]


class MemoryFeatureStore:
    def __init__(
        self,
        *,
        max_related_per_item: int = 100,
        max_popular: int = 10_000,
        max_sessions: int = 200_000,
        dedupe_window: int = 500_000,
        neighbour_sessions_per_item: int = 100,
    ) -> None:
        self._lock = threading.Lock()
        self._max_related = max_related_per_item
        self._max_popular = max_popular
        self._max_sessions = max_sessions
        self._dedupe_window = dedupe_window
        self._max_neighbours = neighbour_sessions_per_item
        self._clear()

    def reset(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._landmark: float | None = None
        self._offsets: dict[int, int] = {}
        self._coview: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self._sequence: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self._popularity: dict[str, float] = {}
        self._category_popularity: defaultdict[str, dict[str, float]] = defaultdict(dict)
        self._profiles: dict[str, UserProfile] = {}
        self._index: defaultdict[str, dict[str, float]] = defaultdict(dict)
        """item -> {session: its last activity}: the session-neighbour index."""
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._experiments: defaultdict[str, int] = defaultdict(int)
        self._versions: defaultdict[str, int] = defaultdict(int)
        # Sorted views of the score tables, built on first read after a write: requests
        # outnumber batches, and a request reads ~10 lists.
        self._sorted: dict[tuple[str, str], Scored] = {}
        # The popularity tables (thousands of items, written by nearly every event) are
        # ranked on first read too, but then kept in step by each write instead of dropped.
        self._rankings: dict[str | None, _Ranking] = {}
        """category (None: all items) -> its popularity table's ranking."""
        self._recent: dict[int, tuple[int, dict[str, float]]] = {}
        """ring slot -> (the time bucket it holds, item -> weight): ``reco.signals.trend``."""
        self._recent_rankings: dict[int, _Ranking] = {}

    # -- processor side ----------------------------------------------------------------
    def applied_offsets(self) -> dict[int, int]:
        with self._lock:
            return dict(self._offsets)

    def landmark(self) -> float | None:
        return self._landmark

    def load_states(
        self, users: Iterable[str], sessions: Iterable[str]
    ) -> tuple[dict[str, UserProfile], dict[str, SessionState]]:
        # Copies: the processor mutates them while the api may read the stored ones.
        with self._lock:
            profiles = {
                u: UserProfile.from_dict(p.to_dict())
                for u in users
                if (p := self._profiles.get(u)) is not None
            }
            wanted = set(sessions)
            wanted.update(p.session_id for p in profiles.values() if p.session_id is not None)
            states = {
                s: SessionState.from_dict(st.to_dict())
                for s in wanted
                if (st := self._sessions.get(s)) is not None
            }
        return profiles, states

    def unseen(self, event_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {e for e in event_ids if e not in self._seen}

    def apply(self, delta: FeatureDelta) -> ApplyOutcome:
        with self._lock:
            outcome = offsets_check(self._offsets, delta)
            if outcome is not ApplyOutcome.APPLIED:
                return outcome
            if self._landmark is None:
                self._landmark = delta.landmark
            elif delta.landmark != self._landmark:
                return ApplyOutcome.OTHER_LANDMARK
            self._add_nested(self._coview, delta.coview, self._max_related)
            self._add_nested(self._sequence, delta.sequence, self._max_related)
            self._add_ranked(self._rankings, None, self._popularity, delta.popularity)
            for category, increments in delta.category_popularity.items():
                table = self._category_popularity[category]
                self._add_ranked(self._rankings, category, table, increments)
            for bucket in sorted(delta.recent):
                self._add_recent(bucket, delta.recent[bucket])
            self._invalidate(delta)
            self._add_index(delta.neighbour_index)
            for user_id, profile in delta.profiles.items():
                self._profiles[user_id] = profile
                self._versions["u:" + user_id] += 1
            for session_id, state in delta.sessions.items():
                self._sessions[session_id] = state
                self._sessions.move_to_end(session_id)
                self._versions["s:" + session_id] += 1
            while len(self._sessions) > self._max_sessions:
                dropped, _ = self._sessions.popitem(last=False)
                self._versions.pop("s:" + dropped, None)
            for event_id in delta.event_ids:
                self._seen[event_id] = None
            while len(self._seen) > self._dedupe_window:
                self._seen.popitem(last=False)
            for counter, by in delta.experiments.items():
                self._experiments[counter] += by
            self._offsets.update(delta.offsets)
        return ApplyOutcome.APPLIED

    def rescale(
        self,
        landmark: float,
        coview_factor: float,
        popularity_factor: float,
        *,
        from_landmark: float | None = None,
    ) -> None:
        with self._lock:
            if landmark == self._landmark or (
                from_landmark is not None and from_landmark != self._landmark
            ):
                return
            for table in (self._coview, self._sequence):
                for values in table.values():
                    for key in values:
                        values[key] *= coview_factor
            for pop in (self._popularity, *self._category_popularity.values()):
                for key in pop:
                    pop[key] *= popularity_factor
            self._landmark = landmark
            self._sorted.clear()
            # The order stands, but rounding may tie two values: rank them anew on next read.
            self._rankings.clear()

    def _invalidate(self, delta: FeatureDelta) -> None:
        drop = self._sorted.pop
        for item in delta.coview:
            drop(("cv", item), None)
        for item in delta.sequence:
            drop(("seq", item), None)

    def _add_index(self, index: dict[str, dict[str, float]]) -> None:
        # A session's activity only moves forward, so a new score replaces the stored one,
        # as ZADD does in the Redis store; trimmed like the other lists, oldest first.
        drop = self._sorted.pop
        for item, sessions in index.items():
            target = self._index[item]
            target.update(sessions)
            _trim(target, self._max_neighbours)
            drop(("nb", item), None)

    def _add_recent(self, bucket: int, increments: dict[str, float]) -> None:
        """Into the bucket's ring slot: emptied first when it held an older bucket, left
        alone when it holds a newer one."""
        slot = slot_of(bucket)
        held = self._recent.get(slot)
        if held is not None and held[0] > bucket:
            return
        if held is None or held[0] < bucket:
            held = self._recent[slot] = (bucket, {})
            self._recent_rankings.pop(slot, None)
        self._add_ranked(self._recent_rankings, slot, held[1], increments)

    def _add_ranked(
        self,
        rankings: dict[Any, _Ranking],
        key: Any,
        target: dict[str, float],
        increments: dict[str, float],
    ) -> None:
        """Increments into a popularity-like table, kept in step with its ranking, if any."""
        ranking = rankings.get(key)
        if ranking is None:
            self._add(target, increments, self._max_popular)
            return
        for item, value in increments.items():
            old = target.get(item)
            new = target[item] = (0.0 if old is None else old) + value
            ranking.move(item, old, new)
        if len(target) > self._max_popular * TRIM_SLACK:
            for item in ranking.drop_weakest(self._max_popular):
                del target[item]

    @staticmethod
    def _add(target: dict[str, float], increments: dict[str, float], cap: int) -> None:
        for key, value in increments.items():
            target[key] = target.get(key, 0.0) + value
        _trim(target, cap)

    @classmethod
    def _add_nested(
        cls,
        target: defaultdict[str, dict[str, float]],
        increments: dict[str, defaultdict[str, float]],
        cap: int,
    ) -> None:
        for outer, inner in increments.items():
            cls._add(target[outer], inner, cap)

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
        with self._lock:
            context: list[str] = []
            purchases: list[str] = []
            version = 0
            exclude = session_id
            if session_id is not None:
                state = self._sessions.get(session_id)
                if state is not None:
                    context = list(reversed(state.items))
                version = self._versions.get("s:" + session_id, 0)
            elif user_id is not None:
                profile = self._profiles.get(user_id)
                if profile is not None:
                    context = [item for item, _, _ in profile.recent]
                    purchases = list(profile.purchases)
                    exclude = profile.session_id
                version = self._versions.get("u:" + user_id, 0)
            distinct = list(dict.fromkeys(context))[:context_items]
            related = {item: self._related(item, related_per_item) for item in distinct}
            return RecoInputs(
                context=context,
                purchases=purchases,
                related=related,
                popular=self._popular(popular, category),
                version=version,
                neighbours=self._neighbours(
                    context[:context_items][::-1], exclude, neighbour_sample, neighbour_k
                ),
                recent=self._recent_head(recent_bucket, popular),
                recent_before=self._recent_head(
                    None if recent_bucket is None else recent_bucket - 1, popular
                ),
            )

    def neighbours(
        self, items: Sequence[str], *, exclude: str | None, sample: int, k: int
    ) -> Scored:
        with self._lock:
            return self._neighbours(items, exclude, sample, k)

    def _neighbours(self, items: Sequence[str], exclude: str | None, sample: int, k: int) -> Scored:
        chosen = select_neighbours(
            query(items), self._postings, sample=sample, k=k, exclude=exclude
        )
        sessions = self._sessions
        return neighbour_scores(
            (n, state.items) for n in chosen if (state := sessions.get(n.session_id)) is not None
        )

    def _postings(self, item: str) -> list[Posting]:
        """The item's index list, most recent first, at most the cap (the stored list may be
        up to the trim slack over it)."""
        table = self._index.get(item)
        if not table:
            return []
        ranked = self._sorted.get(("nb", item))
        if ranked is None:
            ranked = self._sorted[("nb", item)] = _top(table, self._max_neighbours)
        return ranked

    def related(self, item_id: str, limit: int) -> Related:
        with self._lock:
            return self._related(item_id, limit)

    def popular(self, limit: int, category: str | None = None) -> Scored:
        with self._lock:
            return self._popular(limit, category)

    def _related(self, item_id: str, limit: int) -> Related:
        return Related(
            coview=self._ranked(("cv", item_id), self._coview.get(item_id), limit),
            sequence=self._ranked(("seq", item_id), self._sequence.get(item_id), limit),
        )

    def _popular(self, limit: int, category: str | None) -> Scored:
        table = self._popularity if category is None else self._category_popularity.get(category)
        if not table:
            return []
        ranking = self._rankings.get(category)
        if ranking is None:
            ranking = self._rankings[category] = _Ranking(table)
        return ranking.head(limit)

    def _recent_head(self, bucket: int | None, limit: int) -> Scored:
        if bucket is None:
            return []
        slot = slot_of(bucket)
        held = self._recent.get(slot)
        if held is None or held[0] != bucket or not held[1]:
            return []
        ranking = self._recent_rankings.get(slot)
        if ranking is None:
            ranking = self._recent_rankings[slot] = _Ranking(held[1])
        return ranking.head(limit)

    def _ranked(self, key: tuple[str, str], table: dict[str, float] | None, limit: int) -> Scored:
        if not table:
            return []
        ranked = self._sorted.get(key)
        if ranked is None:
            ranked = self._sorted[key] = sorted(
                table.items(), key=lambda kv: (kv[1], kv[0]), reverse=True
            )
        return ranked[:limit]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "landmark": self._landmark,
                "offsets": dict(sorted(self._offsets.items())),
                "coview": {k: dict(sorted(v.items())) for k, v in sorted(self._coview.items())},
                "sequence": {k: dict(sorted(v.items())) for k, v in sorted(self._sequence.items())},
                "popularity": dict(sorted(self._popularity.items())),
                "category_popularity": {
                    k: dict(sorted(v.items())) for k, v in sorted(self._category_popularity.items())
                },
                "profiles": {k: v.to_dict() for k, v in sorted(self._profiles.items())},
                "sessions": {k: v.to_dict() for k, v in sorted(self._sessions.items())},
                "neighbour_index": {
                    k: dict(sorted(v.items())) for k, v in sorted(self._index.items())
                },
                "recent": {
                    bucket: dict(sorted(table.items()))
                    for bucket, table in sorted(self._recent.values())
                    if table
                },
                "experiments": dict(sorted(self._experiments.items())),
            }

    def experiment_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._experiments.items()))

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None
