"""A feature store that freezes a trained model and lets only session state advance.

The static mode of the "next" protocol (EVALUATION.md §6) wants the model learnt from ``T``
frozen while each test session's own prefix advances. The options were:

* copy the trained store for each test session and run the processor on the copy: a full
  copy per session is slow, and the copy would still learn co-view, sequence and popularity
  from the session's own events, so the model would not be frozen;
* a "session-only" processor mode: a change to the engine for the sake of evaluation;
* this overlay, chosen: the real ``Processor`` runs unchanged (decode, dedupe, ``apply_event``
  for every event) against a ``FeatureStore`` that keeps the batch's session and profile
  states and offsets, and drops its co-view, sequence and popularity increments. States it
  has not written are read from the frozen store (a user's trained history, for the user
  protocol); reads combine them with the frozen store's related and popular lists. All of
  it goes through the store's public methods, and the frozen store is never written.

``recommendation_inputs`` mirrors ``MemoryFeatureStore``'s (context = the session's items,
most recent first; related lists of its first ``context_items`` distinct items; the popular
list); ``tests/unit/test_evaluation.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from reco.ports import ApplyOutcome, FeatureStore, RecoInputs, Related, Scored, offsets_check
from reco.signals import FeatureDelta, SessionState, UserProfile


class FrozenFeatures:
    """``FeatureStore`` over a frozen ``base``: a copy-on-write view of its session and
    profile states (read from the base until written here), and its model read-only."""

    def __init__(self, base: FeatureStore) -> None:
        self._base = base
        self._offsets: dict[int, int] = {}
        self._seen: set[str] = set()
        self._profiles: dict[str, UserProfile] = {}
        self._sessions: dict[str, SessionState] = {}
        self._versions: dict[str, int] = {}

    def forget(self) -> None:
        """Drop every session and profile: the next session starts from an empty state."""
        self._profiles.clear()
        self._sessions.clear()

    # -- processor side ----------------------------------------------------------------
    def applied_offsets(self) -> dict[int, int]:
        return dict(self._offsets)

    def landmark(self) -> float | None:
        return self._base.landmark()

    def load_states(
        self, users: Iterable[str], sessions: Iterable[str]
    ) -> tuple[dict[str, UserProfile], dict[str, SessionState]]:
        users, wanted = list(users), set(sessions)
        profiles = {u: _copy(p) for u in users if (p := self._profiles.get(u)) is not None}
        missing = [u for u in users if u not in profiles]
        if missing:
            profiles.update(self._base.load_states(missing, ())[0])
        wanted.update(p.session_id for p in profiles.values() if p.session_id is not None)
        states = {s: _copy_state(st) for s in wanted if (st := self._sessions.get(s)) is not None}
        missing = [s for s in wanted if s not in states]
        if missing:
            states.update(self._base.load_states((), missing)[1])
        return profiles, states

    def unseen(self, event_ids: Sequence[str]) -> set[str]:
        fresh = {e for e in event_ids if e not in self._seen}
        return self._base.unseen(sorted(fresh)) if fresh else set()

    def apply(self, delta: FeatureDelta) -> ApplyOutcome:
        """Keep the batch's states and offsets; its model increments are dropped on purpose."""
        outcome = offsets_check(self._offsets, delta)
        if outcome is not ApplyOutcome.APPLIED:
            return outcome
        self._profiles.update(delta.profiles)
        for session_id, state in delta.sessions.items():
            self._sessions[session_id] = state
            self._versions[session_id] = self._versions.get(session_id, 0) + 1
        self._seen.update(delta.event_ids)
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
        """Nothing to do: the overlay stores no decayed values, and the model is frozen.

        The processor asks for this when test events lie more than 256 half-lives after the
        landmark; its deltas then carry the new landmark, which ``apply`` ignores anyway.
        """

    def reset(self) -> None:
        self.forget()
        self._offsets.clear()
        self._seen.clear()

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
        context: list[str] = []
        purchases: list[str] = []
        version = 0
        exclude = session_id
        if session_id is not None:
            state = self._sessions.get(session_id)
            if state is None:
                state = self._base.load_states((), [session_id])[1].get(session_id)
            if state is not None:
                context = list(reversed(state.items))
            version = self._versions.get(session_id, 0)
        elif user_id is not None:
            profile = self._profiles.get(user_id)
            if profile is None:
                profile = self._base.load_states([user_id], ())[0].get(user_id)
            if profile is not None:
                context = [item for item, _, _ in profile.recent]
                purchases = list(profile.purchases)
                exclude = profile.session_id
        distinct = list(dict.fromkeys(context))[:context_items]
        # The frozen model's item-level lists: popularity and the recent weights.
        shared = self._base.recommendation_inputs(
            user_id=None,
            session_id=None,
            context_items=0,
            related_per_item=0,
            popular=popular,
            category=category,
            recent_bucket=recent_bucket,
        )
        return RecoInputs(
            context=context,
            purchases=purchases,
            related={item: self._base.related(item, related_per_item) for item in distinct},
            popular=shared.popular,
            recent=shared.recent,
            recent_before=shared.recent_before,
            version=version,
            neighbours=self.neighbours(
                context[:context_items][::-1],
                exclude=exclude,
                sample=neighbour_sample,
                k=neighbour_k,
            ),
        )

    def neighbours(
        self, items: Sequence[str], *, exclude: str | None, sample: int, k: int
    ) -> Scored:
        """The frozen model's neighbours: its index and sessions, never the overlay's."""
        if not items or k <= 0:
            return []
        return self._base.neighbours(items, exclude=exclude, sample=sample, k=k)

    def related(self, item_id: str, limit: int) -> Related:
        return self._base.related(item_id, limit)

    def popular(self, limit: int, category: str | None = None) -> Scored:
        return self._base.popular(limit, category)

    def experiment_counts(self) -> dict[str, int]:
        return self._base.experiment_counts()

    def snapshot(self) -> dict[str, Any]:
        """The frozen model's features (the overlay holds only transient session state)."""
        return self._base.snapshot()

    def ready(self) -> bool:
        return self._base.ready()

    def close(self) -> None:
        return None


def _copy(profile: UserProfile) -> UserProfile:
    return UserProfile.from_dict(profile.to_dict())


def _copy_state(state: SessionState) -> SessionState:
    return SessionState.from_dict(state.to_dict())
