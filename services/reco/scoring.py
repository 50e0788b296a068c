"""The hybrid score: ``sum(w_signal * signal)`` over candidates, each signal in [0, 1].

Candidates come from the related lists of the user's recent items (co-view, sequence), the
recent items themselves (recency) and the popular list. A context item's contribution is
weighted ``history_decay ** position`` (the most recent item counts most), and each related
list is divided by its own maximum first so that one very popular context item does not
drown the others. Each signal is then divided by its maximum over the candidates.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

from reco.ports import RecoInputs, Related, Scored
from reco.settings import SignalWeights
from reco.signals.history import context_weights

SIGNALS = ("coview", "sequence", "neighbours", "embedding", "popularity", "recency")
# A signal is named among an item's reasons when it brings at least this share of the score.
REASON_SHARE = 0.1
# The embedding weight of a cold item's similar list when the configured weight is 0: it
# leads, and popularity (0.1 by default) only breaks near-ties.
COLD_EMBEDDING_WEIGHT = 1.0

Sourced = list[tuple[str, float, str]]
"""``(item, value, source item)``: a signal's raw values with what each comes from."""


@dataclass(slots=True)
class Candidate:
    item_id: str
    score: float = 0.0
    signals: dict[str, float] = field(default_factory=dict)
    """Each signal's normalised value times its weight: the parts of ``score``."""
    sources: dict[str, str] = field(default_factory=dict)
    """Per signal, the context item that contributed most (the "because of")."""

    def reasons(self) -> list[tuple[str, str | None]]:
        """``(signal, source item)`` of the signals that carry the weighted sum, strongest
        first (also when a ranker gave the item another score)."""
        total = sum(self.signals.values())
        if total <= 0:
            return [("popularity", None)]
        ranked = sorted(self.signals.items(), key=lambda kv: kv[1], reverse=True)
        out = [(s, self.sources.get(s)) for s, v in ranked if v >= REASON_SHARE * total]
        return out or [(ranked[0][0], self.sources.get(ranked[0][0]))]


class _Accumulator:
    """Raw per-signal sums and the best source of each, before normalisation."""

    def __init__(self) -> None:
        self.raw: dict[str, dict[str, float]] = {s: {} for s in SIGNALS}
        self.best: dict[str, dict[str, tuple[float, str]]] = {s: {} for s in SIGNALS}

    def add(self, signal: str, item: str, value: float, source: str | None = None) -> None:
        table = self.raw[signal]
        table[item] = table.get(item, 0.0) + value
        if source is not None:
            best = self.best[signal].get(item)
            if best is None or value > best[0]:
                self.best[signal][item] = (value, source)

    def add_list(self, signal: str, scored: Scored, weight: float, source: str) -> None:
        """``add`` for each item of a list divided by its head (inlined: the hot loop of a
        request, ~2,000 calls on a long history)."""
        if not scored:
            return
        top = scored[0][1]
        if top <= 0:
            return
        table, best = self.raw[signal], self.best[signal]
        get, best_of = table.get, best.get
        for item, value in scored:
            part = weight * value / top
            table[item] = get(item, 0.0) + part
            held = best_of(item)
            if held is None or part > held[0]:
                best[item] = (part, source)

    def add_scored(self, signal: str, scored: Scored) -> None:
        """``add`` for each item of a list with no source item: one C-level copy when the
        signal has no value yet and the list names each item once (the neighbour list)."""
        table = self.raw[signal]
        if not table:
            table.update(scored)
            if len(table) == len(scored):
                return
            table.clear()
        get = table.get
        for item, value in scored:
            table[item] = get(item, 0.0) + value


def score(
    inputs: RecoInputs,
    weights: SignalWeights,
    *,
    history_decay: float,
    context_items: int,
    extra: Mapping[str, Scored] | None = None,
    sourced: Mapping[str, Sourced] | None = None,
) -> Ranked:
    """Candidates ranked by hybrid score (ties by item id, so the order is deterministic).

    ``extra`` adds signals computed elsewhere (session neighbours) as
    ``signal -> [(item, raw score)]``; ``sourced`` the same with the context item each
    value comes from (embeddings: ``(item, similarity, nearest context item)``).
    """
    acc = _Accumulator()
    for source, weight in context_weights(inputs.context, history_decay)[:context_items]:
        related = inputs.related.get(source, Related())
        acc.add_list("coview", related.coview, weight, source)
        acc.add_list("sequence", related.sequence, weight, source)
        acc.add("recency", source, weight, source)
    acc.add_list("popularity", inputs.popular, 1.0, "")
    for signal, scored in (extra or {}).items():
        acc.add_scored(signal, scored)
    for signal, explained in (sourced or {}).items():
        for item, value, source in explained:
            acc.add(signal, item, value, source)
    return rank(acc, weights)


def rank(acc: _Accumulator, weights: SignalWeights, *, drop: Collection[str] = ()) -> Ranked:
    """Every candidate but ``drop`` by score (ties by item id); each signal divided by its
    maximum (over every candidate, ``drop`` included)."""
    parts: list[_Part] = []
    totals: dict[str, float] = {}
    get = totals.get
    for signal in SIGNALS:
        weight = getattr(weights, signal)
        table = acc.raw[signal]
        if weight <= 0 or not table:
            continue
        top = max(table.values())
        if top <= 0:
            continue
        parts.append(_Part(signal, weight, top, table))
        for item, raw in table.items():
            totals[item] = get(item, 0.0) + weight * raw / top
    for item in drop:
        totals.pop(item, None)
    # By score, highest first, ties by item id: two sorts on C-level keys (a stable sort
    # keeps the id order among equal scores) instead of one on a tuple built per candidate.
    order = sorted(totals)
    order.sort(key=totals.__getitem__, reverse=True)
    return Ranked(order, totals, parts, acc.best, acc.raw)


@dataclass(frozen=True, slots=True)
class _Part:
    """One weighted signal of a ranking: an item's part is ``weight * raw[item] / top``."""

    signal: str
    weight: float
    top: float
    raw: dict[str, float]


class Ranked(Sequence[Candidate]):
    """Candidates in rank order, each built when first read: a request reads the head of a
    ranking of about a thousand candidates, so building them all would be wasted."""

    def __init__(
        self,
        order: list[str],
        totals: dict[str, float],
        parts: list[_Part],
        best: dict[str, dict[str, tuple[float, str]]],
        raw: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self._order = order
        self._totals = totals
        self._parts = parts
        self._best = best
        self.raw = raw or {}
        """Each signal's raw values per candidate, weighted or not (the ranker's features)."""
        self.recent: dict[str, float] = {}
        """The items' weight in the last ``trend_window_s`` where read (the ranker's trend
        features; ``reco.signals.trend``): set by who read it."""
        self._built: dict[int, Candidate] = {}

    @property
    def order(self) -> list[str]:
        """The candidates' ids in rank order."""
        return self._order

    @property
    def totals(self) -> dict[str, float]:
        """The score each candidate is ranked by: the weighted sum, or a ranker's."""
        return self._totals

    def reranked(self, order: list[str], scores: Sequence[float]) -> Ranked:
        """These candidates in ``order``, scored ``scores`` (non-increasing) by another model
        (the ranker); each keeps the signals and sources of its reasons."""
        totals = dict(zip(order, scores, strict=True))
        ranked = Ranked(list(order), totals, self._parts, self._best, self.raw)
        ranked.recent = self.recent
        return ranked

    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, index: int) -> Candidate: ...

    @overload
    def __getitem__(self, index: slice) -> list[Candidate]: ...

    def __getitem__(self, index: int | slice) -> Candidate | list[Candidate]:
        if isinstance(index, slice):
            return [self._candidate(i) for i in range(*index.indices(len(self._order)))]
        if index < 0:
            index += len(self._order)
        if not 0 <= index < len(self._order):
            raise IndexError(index)
        return self._candidate(index)

    def __iter__(self) -> Iterator[Candidate]:
        for index in range(len(self._order)):
            yield self._candidate(index)

    def without(self, exclude: Collection[str]) -> Iterator[Candidate]:
        """The candidates in order, skipping ``exclude`` before building them (a page may
        leave out hundreds of items a user already rated)."""
        order = self._order
        for index in range(len(order)):
            if order[index] not in exclude:
                yield self._candidate(index)

    def _candidate(self, index: int) -> Candidate:
        cand = self._built.get(index)
        if cand is None:
            item = self._order[index]
            cand = self._built[index] = Candidate(item, self._totals[item])
            for part in self._parts:
                raw = part.raw.get(item)
                if raw is not None:
                    signal = part.signal
                    cand.signals[signal] = part.weight * raw / part.top
                    best = self._best[signal].get(item)
                    if best is not None and best[1]:
                        cand.sources[signal] = best[1]
        return cand


def similar(
    related: Related,
    popular: Scored,
    weights: SignalWeights,
    item_id: str,
    embedding: Scored | None = None,
) -> Ranked:
    """Items related to ``item_id``: its co-view and sequence lists, its nearest items by
    embedding, then popular items.

    An item with no co-view or sequence list yet (a cold item) is ranked by its embedding
    even when the ``embedding`` weight is 0: what is known about it beats popularity alone.
    """
    acc = _Accumulator()
    acc.add_list("coview", related.coview, 1.0, item_id)
    acc.add_list("sequence", related.sequence, 1.0, item_id)
    acc.add_list("embedding", embedding or [], 1.0, item_id)
    acc.add_list("popularity", popular, 1.0, "")
    if embedding and not related.coview and not related.sequence and weights.embedding <= 0:
        weights = weights.model_copy(update={"embedding": COLD_EMBEDDING_WEIGHT})
    return rank(acc, weights, drop=(item_id,))
