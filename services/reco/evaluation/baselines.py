"""Reference baselines of session-based recommendation, written from their descriptions.

None of them shares a code path with the engine: they are the yardstick it is measured by.

* **POP**: items by their number of training events.
* **S-POP**: items by their number of events in the current session, ties by POP.
* **SR**, sequential rules (Ludewig & Jannach 2018, after Kamehkhosh et al. 2017): in every
  training session, item ``j`` at ``d <= 10`` steps after item ``i`` adds ``1/d`` to rule
  ``i → j``; each item keeps its 20 strongest rules; the score of ``j`` is the weight of the
  rule from the session's last item to ``j``.
* **V-SKNN**, vector-multiplication session kNN (Ludewig & Jannach 2018; session-rec's
  ``vsknn``): the current session is a vector whose item at position ``p`` of ``L`` weighs
  ``p / L`` (the latest occurrence of an item counts); the candidate neighbours are the
  training sessions that share an item with it, of which the ``sample`` most recent (by last
  event) are kept; similarity = the dot product of the current vector with a neighbour's
  binary item vector, over the number of distinct current items; the ``k`` most similar
  neighbours each add ``similarity / s`` to every item they contain, where ``s`` is how many
  steps back from the end of the current session the newest item they share with it lies.

Protocol §4 asks for at least 20 distinct items, so every baseline pads with POP once its
own signal runs dry; equal scores stay ties (scored by their expected value), except in
S-POP, whose definition breaks them by popularity.

In the user protocol the "current session" is the user's whole training history (in the
purchase target's user unit, also the events replayed since), and V-SKNN skips neighbour
sessions of the same user (they hold only items the user has rated).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence

from reco.evaluation.metrics import Ranking, Rest
from reco.events import Event


class Popularity:
    """Event counts per item, kept in non-increasing order as they change.

    An increment swaps the item with the first item of its count group and moves that
    group's start one place on: O(1), where re-sorting the catalogue at every online event
    would make the baselines' timings about the sort. Items of equal count tie anyway.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._start: dict[int, int] = {}
        """Per count, the index in ``_order`` of the first item with that count."""

    def add(self, item: str) -> None:
        count = self.counts.get(item, 0)
        if count == 0:
            self._index[item] = len(self._order)
            self._order.append(item)
            self._start.setdefault(0, self._index[item])
        i, j = self._index[item], self._start[count]
        other = self._order[j]
        self._order[i], self._order[j] = other, item
        self._index[other], self._index[item] = i, j
        if j + 1 < len(self._order) and self.counts.get(self._order[j + 1], 0) == count:
            self._start[count] = j + 1
        else:
            del self._start[count]
        self._start.setdefault(count + 1, j)
        self.counts[item] = count + 1

    def order(self) -> Iterator[tuple[str, int]]:
        """Items with their counts, most popular first."""
        counts = self.counts
        return ((item, counts[item]) for item in self._order)


def rank_with_padding(
    primary: Mapping[str, float],
    popularity: Popularity,
    n: int,
    exclude: Container[str],
    *,
    popularity_breaks_ties: bool = False,
) -> Ranking:
    """Items with a positive ``primary`` score first, then the rest by popularity.

    The list ends once it has ``n`` items and its last tie group is complete, so what it
    leaves out ranks strictly lower (``Rest.BELOW``).
    """
    counts = popularity.counts
    keyed: list[tuple[str, tuple[float, float]]] = [
        (item, (score, float(counts.get(item, 0)) if popularity_breaks_ties else 0.0))
        for item, score in primary.items()
        if score > 0 and item not in exclude
    ]
    keyed.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)
    listed = _complete_groups(keyed, n)
    if len(listed) < n:
        taken = {item for item, _ in listed}
        padding = (
            (item, (0.0, float(c)))
            for item, c in popularity.order()
            if item not in taken and item not in exclude
        )
        listed += _complete_groups(padding, n - len(listed))
    # Scores that keep exactly the order and the ties of the lexicographic keys.
    scores: list[float] = []
    group = 0
    for index, (_, key) in enumerate(listed):
        if index and key != listed[index - 1][1]:
            group += 1
        scores.append(float(-group))
    return Ranking(tuple(item for item, _ in listed), tuple(scores), Rest.BELOW)


def _complete_groups(
    keyed: Iterable[tuple[str, tuple[float, float]]], n: int
) -> list[tuple[str, tuple[float, float]]]:
    out: list[tuple[str, tuple[float, float]]] = []
    for item, key in keyed:
        if len(out) >= n and key != out[-1][1]:
            break
        out.append((item, key))
    return out


class Baseline:
    """What every baseline shares: popularity, the replayed sessions, users' histories.

    Training feeds the events in time order through the same ``_learn`` that online mode
    calls for each replayed event, so the batch and the online model cannot drift apart.
    """

    name = "baseline"
    popularity_breaks_ties = False

    def __init__(self) -> None:
        self.popularity = Popularity()
        self._online = False
        self._current: dict[str, list[str]] = {}
        self._history: defaultdict[str, list[str]] = defaultdict(list)
        self._trained: dict[str, list[str]] = {}
        """The training sessions' items: a replay that splits by time continues them."""

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        self._online = online
        previous: defaultdict[str, list[str]] = defaultdict(list)
        for event in train:
            self.popularity.add(event.item_id)
            self._history[event.user_id].append(event.item_id)
            session = previous[_session(event)]
            self._learn(event, session)
            session.append(event.item_id)
        self._trained = previous

    def observe(self, event: Event) -> None:
        key = _session(event)
        session = self._current.get(key)
        if session is None:
            session = self._current[key] = list(self._trained.get(key, ()))
        if self._online:
            self.popularity.add(event.item_id)
            self._learn(event, session)
        session.append(event.item_id)
        self._history[event.user_id].append(event.item_id)

    def rank(
        self, *, session_id: str | None, user_id: str | None, n: int, exclude: frozenset[str]
    ) -> Ranking:
        if session_id is not None:
            items = self._current.get(session_id, [])
        else:
            items = self._history.get(user_id or "", [])
        return rank_with_padding(
            self._scores(items, session_id, user_id),
            self.popularity,
            n,
            exclude,
            popularity_breaks_ties=self.popularity_breaks_ties,
        )

    def end_session(self, session_id: str) -> None:
        self._current.pop(session_id, None)

    def _learn(self, event: Event, before: Sequence[str]) -> None:
        """Update the model with ``event``; ``before`` holds its session's earlier items."""

    def _scores(
        self, items: Sequence[str], session_id: str | None, user_id: str | None
    ) -> Mapping[str, float]:
        """Scores from the session's (or history's) items, oldest first."""
        return {}


def _session(event: Event) -> str:
    return event.session_id if event.session_id is not None else event.user_id


class Pop(Baseline):
    name = "pop"


class SessionPop(Baseline):
    name = "spop"
    popularity_breaks_ties = True

    def _scores(
        self, items: Sequence[str], session_id: str | None, user_id: str | None
    ) -> Mapping[str, float]:
        return {item: float(c) for item, c in Counter(items).items()}


class SequentialRules(Baseline):
    name = "sr"

    def __init__(self, steps: int = 10, keep: int = 20) -> None:
        super().__init__()
        self.steps = steps
        self.keep = keep
        self._rules: defaultdict[str, defaultdict[str, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self._pruned: dict[str, dict[str, float]] = {}

    def _learn(self, event: Event, before: Sequence[str]) -> None:
        for distance in range(1, min(self.steps, len(before)) + 1):
            antecedent = before[-distance]
            self._rules[antecedent][event.item_id] += 1.0 / distance
            self._pruned.pop(antecedent, None)

    def _scores(
        self, items: Sequence[str], session_id: str | None, user_id: str | None
    ) -> Mapping[str, float]:
        """The pruned rules of the last item. Pruning at read time keeps the same rules as
        pruning after training (ties at the cut go to the larger item id)."""
        if not items or items[-1] not in self._rules:
            return {}
        last = items[-1]
        pruned = self._pruned.get(last)
        if pruned is None:
            strongest = heapq.nlargest(
                self.keep, self._rules[last].items(), key=lambda kv: (kv[1], kv[0])
            )
            pruned = self._pruned[last] = dict(strongest)
        return pruned


class VSKNN(Baseline):
    name = "vsknn"

    def __init__(self, k: int = 100, sample: int = 500) -> None:
        super().__init__()
        self.k = k
        self.sample = sample
        self._items: defaultdict[str, set[str]] = defaultdict(set)
        self._sessions: defaultdict[str, set[str]] = defaultdict(set)
        self._time: dict[str, float] = {}
        self._user: dict[str, str] = {}

    def _learn(self, event: Event, before: Sequence[str]) -> None:
        session = _session(event)
        self._items[session].add(event.item_id)
        self._sessions[event.item_id].add(session)
        self._time[session] = max(self._time.get(session, event.timestamp), event.timestamp)
        self._user[session] = event.user_id

    def _scores(
        self, items: Sequence[str], session_id: str | None, user_id: str | None
    ) -> Mapping[str, float]:
        if not items:
            return {}
        length = len(items)
        # Later occurrences overwrite earlier ones: an item weighs by its latest position.
        weights = {item: position / length for position, item in enumerate(items, 1)}
        scores: defaultdict[str, float] = defaultdict(float)
        for similarity, neighbour in self._neighbours(weights, session_id, user_id):
            shared = self._items[neighbour]
            step = next(s for s, item in enumerate(reversed(items), 1) if item in shared)
            for item in shared:
                scores[item] += similarity / step
        return scores

    def _neighbours(
        self, weights: Mapping[str, float], session_id: str | None, user_id: str | None
    ) -> list[tuple[float, str]]:
        pool: set[str] = set()
        for item in weights:
            pool.update(self._sessions.get(item, ()))
        if session_id is not None:
            pool.discard(session_id)
        else:
            pool = {s for s in pool if self._user.get(s) != user_id}
        if len(pool) > self.sample:
            recent = heapq.nlargest(self.sample, pool, key=lambda s: (self._time[s], s))
            pool = set(recent)
        similar = []
        for neighbour in pool:
            dot = sum(weights.get(item, 0.0) for item in self._items[neighbour])
            if dot > 0:
                similar.append((dot / len(weights), neighbour))
        return heapq.nlargest(self.k, similar)


BASELINES = {cls.name: cls for cls in (Pop, SessionPop, SequentialRules, VSKNN)}
