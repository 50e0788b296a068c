"""Tie-aware ranking metrics, micro-averaged over prediction events, with bootstrap intervals.

A system answers with a :class:`Ranking`; the harness, never the system, locates the target
in it (:func:`locate`), so a system cannot see what it is scored against. Where the target
ties with other candidates the metrics take their expected value over a random order of the
tied items (EVALUATION.md §5): for a target tied with ``t - 1`` others after ``h`` strictly
better candidates, its rank is uniform on ``h + 1 … h + t``. Counting a tie as a win (as some
published harnesses do) flatters systems that give many items the same score.

Intervals resample whole test sessions, because the predictions of one session are
correlated: resampling single predictions would give intervals that are too narrow.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container, Sequence
from dataclasses import dataclass
from enum import Enum

METRICS = ("HR", "MRR", "NDCG")


class Rest(Enum):
    """What a ranking says about the candidates it does not list."""

    TIED = "tied"
    """They score the same as the last listed item (the engine's "no signal" score 0)."""
    BELOW = "below"
    """They rank after every listed item; the last listed tie group is complete."""
    TRUNCATED = "truncated"
    """They score at most the last listed score: the last tie group may go on unseen."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """A system's answer: items best first with non-increasing scores (equal score = tie)."""

    items: tuple[str, ...]
    scores: tuple[float, ...]
    rest: Rest = Rest.BELOW

    def without(self, drop: Container[str]) -> Ranking:
        """The same ranking over a smaller candidate set (items the user has rated, say)."""
        kept = [(i, s) for i, s in zip(self.items, self.scores, strict=True) if i not in drop]
        return Ranking(tuple(i for i, _ in kept), tuple(s for _, s in kept), self.rest)


@dataclass(frozen=True, slots=True)
class Position:
    """Where the target stands: ``higher`` candidates beat it, ``tied`` share its score."""

    higher: int
    tied: int
    open: bool = False
    """The tie group was cut off by the list's end, so ``tied`` is a lower bound."""


def locate(ranking: Ranking, target: str, universe: int, kmax: int) -> Position:
    """The target's position among ``universe`` candidates, as far as ``ranking`` tells.

    ``open`` is set only where the unknown part could change a metric at ``kmax`` or below.
    """
    items, scores = ranking.items, ranking.scores
    n = len(items)
    unlisted = max(universe - n, 0)
    # The last listed tie group starts after ``last_higher`` items; under TRUNCATED it may
    # go on past the list, which matters only if it starts within the cut-offs measured.
    last_higher = sum(1 for s in scores if s > scores[-1]) if n else 0
    may_go_on = ranking.rest is Rest.TRUNCATED and unlisted > 0 and last_higher < kmax
    try:
        index = items.index(target)
    except ValueError:
        if ranking.rest is Rest.TIED and n:
            return Position(last_higher, n - last_higher + unlisted)
        return Position(n, max(unlisted, 1), open=may_go_on)
    score = scores[index]
    higher = sum(1 for s in scores if s > score)
    tied = sum(1 for s in scores if s == score)
    in_last_group = score == scores[-1]
    if in_last_group and ranking.rest is Rest.TIED:
        tied += unlisted
    return Position(higher, tied, open=in_last_group and may_go_on)


def hit_rate(p: Position, n: int) -> float:
    """Expected ``1[rank <= n]``."""
    return min(max(n - p.higher, 0), p.tied) / p.tied


def reciprocal_rank(p: Position, n: int) -> float:
    """Expected ``1[rank <= n] / rank``."""
    last = min(p.higher + p.tied, n)
    return sum(1.0 / r for r in range(p.higher + 1, last + 1)) / p.tied


def ndcg(p: Position, n: int) -> float:
    """Expected ``1[rank <= n] / log2(rank + 1)`` (one relevant item: the ideal DCG is 1)."""
    last = min(p.higher + p.tied, n)
    return sum(1.0 / math.log2(r + 1) for r in range(p.higher + 1, last + 1)) / p.tied


class Scoreboard:
    """Per test session: its prediction count and its sums of HR/MRR/NDCG at K = 1 … kmax.

    Sums per session (not per prediction) are all the micro average and the session
    bootstrap need: a resample's value is the sum of its sessions' sums over their counts.
    """

    def __init__(self, kmax: int) -> None:
        self.kmax = kmax
        self._rows: dict[int, list[float]] = {}
        self._counts: dict[int, int] = {}
        self.open_ties = 0

    @property
    def predictions(self) -> int:
        return sum(self._counts.values())

    @property
    def sessions(self) -> int:
        return len(self._rows)

    def add(self, session: int, p: Position) -> None:
        k = self.kmax
        row = self._rows.get(session)
        if row is None:
            row = self._rows[session] = [0.0] * (len(METRICS) * k)
            self._counts[session] = 0
        self._counts[session] += 1
        self.open_ties += p.open
        # One pass over the ranks the target can take, accumulating all K at once.
        for r in range(p.higher + 1, min(p.higher + p.tied, k) + 1):
            hr, rr, dcg = 1.0 / p.tied, 1.0 / (r * p.tied), 1.0 / (math.log2(r + 1) * p.tied)
            for cut in range(r, k + 1):
                row[cut - 1] += hr
                row[k + cut - 1] += rr
                row[2 * k + cut - 1] += dcg

    def _column(self, metric: str, k: int) -> int:
        if not 1 <= k <= self.kmax:
            raise ValueError(f"K={k} is outside 1..{self.kmax}")
        return METRICS.index(metric) * self.kmax + k - 1

    def value(self, metric: str, k: int) -> float:
        """The micro average over every prediction event."""
        total = self.predictions
        column = self._column(metric, k)
        return sum(row[column] for row in self._rows.values()) / total if total else 0.0

    def curve(self, metric: str) -> list[float]:
        return [self.value(metric, k) for k in range(1, self.kmax + 1)]

    def intervals(
        self,
        wanted: Sequence[tuple[str, int]],
        *,
        resamples: int = 2000,
        seed: int = 0,
        level: float = 0.95,
    ) -> list[tuple[float, float]]:
        """Percentile bootstrap intervals of ``(metric, K)`` pairs over resampled sessions.

        Every pair shares the same resamples, and a given seed gives the same resamples to
        every system of a run (they all see the same sessions in the same order).
        """
        keys = sorted(self._rows)
        counts = [self._counts[s] for s in keys]
        columns = [[self._rows[s][self._column(m, k)] for s in keys] for m, k in wanted]
        return bootstrap(counts, columns, resamples=resamples, seed=seed, level=level)

    def paired_intervals(
        self,
        other: Scoreboard,
        wanted: Sequence[tuple[str, int]],
        *,
        resamples: int = 2000,
        seed: int = 0,
        level: float = 0.95,
    ) -> list[tuple[float, float]]:
        """Intervals of ``self - other`` where both scored the same predictions (two
        settings of one system, say): each resample draws the same sessions for both, so
        what the two share cancels and a small difference can stand out of the noise."""
        keys = sorted(self._rows)
        same = keys == sorted(other._rows) and self.kmax == other.kmax
        if not same or any(self._counts[s] != other._counts[s] for s in keys):
            raise ValueError("paired intervals need the same sessions, predictions and K")
        counts = [self._counts[s] for s in keys]
        columns = [
            [self._rows[s][c] - other._rows[s][c] for s in keys]
            for c in (self._column(m, k) for m, k in wanted)
        ]
        return bootstrap(counts, columns, resamples=resamples, seed=seed, level=level)


def bootstrap(
    counts: Sequence[int],
    columns: Sequence[Sequence[float]],
    *,
    resamples: int,
    seed: int,
    level: float,
) -> list[tuple[float, float]]:
    """Intervals of ``sum(column) / sum(counts)`` under resampling of rows (sessions)."""
    n = len(counts)
    if n == 0:
        return [(0.0, 0.0) for _ in columns]
    rng = random.Random(seed)
    population = range(n)
    draws: list[list[float]] = [[] for _ in columns]
    for _ in range(resamples):
        idx = rng.choices(population, k=n)
        denominator = sum(map(counts.__getitem__, idx))
        for column, out in zip(columns, draws, strict=True):
            out.append(sum(map(column.__getitem__, idx)) / denominator)
    tail = (1.0 - level) / 2.0
    result = []
    for values in draws:
        values.sort()
        result.append((quantile(values, tail), quantile(values, 1.0 - tail)))
    return result


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    if not ordered:
        raise ValueError("quantile of no values")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
