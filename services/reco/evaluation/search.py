"""Searching the engine's request-time settings on inner splits of a training log.

The machinery behind ``reco tune`` (a shop's own log) and ``tools/tune.py`` (the defaults,
on the public datasets). Choosing never looks at the part a search is judged on: the log is
split again by its own last days into inner-train / inner-test (:func:`inner_folds`); for the
user protocol the inner target is each user's last *training* event
(:func:`inner_user_data`). The search is a coordinate search in static mode; a value replaces
the current one only when the paired, session-bootstrap 95 % interval of the difference lies
above zero, and then the value chosen is the smoothest of the plateau (the values not worse
than the best beyond noise), not the noisy maximum.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from reco.adapters.memory_features import MemoryFeatureStore
from reco.embeddings import EmbeddingModel
from reco.embeddings.training import TrainParams
from reco.evaluation.data import NextData, UserData, split_by_days, user_data
from reco.evaluation.engine import EngineSystem
from reco.evaluation.metrics import Position, Ranking, bootstrap, hit_rate, locate, ndcg
from reco.evaluation.metrics import reciprocal_rank as rr
from reco.evaluation.protocols import Outcome, run_next, run_user
from reco.evaluation.runner import Embeddings, embedding_params
from reco.events import Event
from reco.settings import EngineSettings

log = logging.getLogger(__name__)

KMAX = 20
DAY = 86400.0
Point = dict[str, float]
Trained = tuple[MemoryFeatureStore, EmbeddingModel | None]
"""A store trained on an inner-train part, and the item vectors trained with it."""


class Subject(Protocol):
    """What a search needs to know of the log it runs on."""

    @property
    def name(self) -> str: ...

    @property
    def metrics(self) -> tuple[str, str]:
        """(reported, objective): HR@20 / MRR@20 (next protocol), HR@10 / NDCG@10 (user)."""

    @property
    def own_sessions(self) -> bool:
        """The log names its sessions, so ``session_gap_s`` never applies to them."""


# -- inner splits ----------------------------------------------------------------------------


def inner_folds(
    train: Sequence[Event], days: float, folds: int
) -> list[tuple[list[Event], list[Event]]]:
    """``folds`` inner (train, test) splits of the outer training part ``train`` only.

    Fold 0 splits ``train`` by its own last ``days`` days; fold f + 1 splits fold f's
    inner-train the same way, so each fold tests earlier sessions than the fold before, and
    trains only on sessions that end before its own test window.
    """
    out: list[tuple[list[Event], list[Event]]] = []
    rest = list(train)
    for _ in range(folds):
        inner_train, inner_test = split_by_days(rest, days)
        if not inner_train or not inner_test:
            break
        out.append((inner_train, inner_test))
        rest = inner_train
    return out


def inner_user_data(events: Sequence[Event]) -> UserData:
    """The user protocol one step earlier: built from the training part only (each user's
    last event removed), so each user's last *training* event is the target."""
    return user_data(user_data(events).train)


def engine_view(data: NextData | UserData, own_sessions: bool) -> NextData | UserData:
    """Where the dataset names no sessions, the engine gets its training events without the
    sessions the harness gave them, so it sessionizes them by its own ``session_gap_s``; the
    protocol's test sessions and targets stay as loaded (same sessions at the default gap)."""
    if own_sessions:
        return data
    return replace(data, train=[replace(e, session_id=None) for e in data.train])


# -- scoring one configuration on inner splits ---------------------------------------------


QUERY_FIELDS = {
    "weights",
    "history_decay",
    "context_items",
    "related_per_item",
    "neighbour_sample",
    "neighbour_k",
}
METRIC_FNS: dict[str, Callable[[Position, int], float]] = {
    "HR": hit_rate,
    "MRR": rr,
    "NDCG": ndcg,
}


def configure(base: EngineSettings, point: Mapping[str, float]) -> EngineSettings:
    """``base`` with ``point``'s values (``weights.x`` names a signal weight)."""
    weights = {k.removeprefix("weights."): v for k, v in point.items() if k.startswith("weights.")}
    top: dict[str, Any] = {}
    for name, value in point.items():
        if not name.startswith("weights."):
            top[name] = int(value) if isinstance(getattr(base, name), int) else float(value)
    return base.model_copy(update=top | {"weights": base.weights.model_copy(update=weights)})


def read_point(settings: EngineSettings, names: Sequence[str]) -> Point:
    out: Point = {}
    for name in names:
        owner: Any = settings.weights if name.startswith("weights.") else settings
        out[name] = getattr(owner, name.removeprefix("weights."))
    return out


class TrainedEngine(EngineSystem):
    """The engine over a store (and item vectors) already trained on the same training
    events, static mode only.

    Static replay never writes the trained store (``FrozenFeatures``), and the processor
    resumes at the store's offsets, so ``fit`` has nothing left to apply: a configuration
    that differs only in ``QUERY_FIELDS`` reuses the model. ``InnerBench`` checks once that
    this gives the same rankings as training afresh.
    """

    def __init__(
        self,
        settings: EngineSettings,
        store: MemoryFeatureStore,
        vectors: EmbeddingModel | None = None,
    ) -> None:
        self._trained = store
        super().__init__(settings)
        self.model = vectors

    def _new_store(self) -> MemoryFeatureStore:
        return self._trained

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        if online:
            raise ValueError("a trained store is reused in static mode only")
        super().fit((), online=False)


class Recorder:
    """A system passed through, keeping every ranking it returns in call order."""

    def __init__(self, system: EngineSystem) -> None:
        self.system = system
        self.name = system.name
        self.rankings: list[Ranking] = []

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        self.system.fit(train, online=online)

    def observe(self, event: Event) -> None:
        self.system.observe(event)

    def rank(
        self, *, session_id: str | None, user_id: str | None, n: int, exclude: frozenset[str]
    ) -> Ranking:
        ranking = self.system.rank(session_id=session_id, user_id=user_id, n=n, exclude=exclude)
        self.rankings.append(ranking)
        return ranking

    def end_session(self, session_id: str) -> None:
        self.system.end_session(session_id)


def positions(
    data: NextData | UserData, rankings: Sequence[Ranking]
) -> Iterator[tuple[int, Position]]:
    """``(test session or user, target position)`` in the static replay's order of requests."""
    if isinstance(data, NextData):
        universe = len(data.catalogue)
        targets = [
            (i, s[t + 1].item_id) for i, s in enumerate(data.sessions) for t in range(len(s) - 1)
        ]
        for (index, target), ranking in zip(targets, rankings, strict=True):
            yield index, locate(ranking, target, universe, KMAX)
        return
    for index, (event, ranking) in enumerate(zip(data.targets, rankings, strict=True)):
        rated = data.rated.get(event.user_id, frozenset())
        yield (
            index,
            locate(ranking.without(rated), event.item_id, data.universe(event.user_id), KMAX),
        )


@dataclass(frozen=True)
class Score:
    """Per test session (every fold's, in turn): predictions and sums of each metric."""

    counts: tuple[int, ...]
    sums: dict[str, tuple[float, ...]]

    def value(self, metric: str) -> float:
        return sum(self.sums[metric]) / sum(self.counts)

    def interval(self, metric: str, *, resamples: int, seed: int) -> tuple[float, float]:
        return bootstrap(
            self.counts, [self.sums[metric]], resamples=resamples, seed=seed, level=0.95
        )[0]

    def minus(
        self, other: Score, metric: str, *, resamples: int, seed: int
    ) -> tuple[float, float, float]:
        """``self - other`` and its paired 95 % interval (same sessions resampled)."""
        diff = [a - b for a, b in zip(self.sums[metric], other.sums[metric], strict=True)]
        lo, hi = bootstrap(self.counts, [diff], resamples=resamples, seed=seed, level=0.95)[0]
        return self.value(metric) - other.value(metric), lo, hi


class InnerBench:
    """Scores engine configurations on inner splits (static mode), reusing trained models."""

    def __init__(
        self,
        dataset: Subject,
        splits: Sequence[NextData | UserData],
        base: EngineSettings,
        *,
        resamples: int,
        seed: int,
        stores: int = 4,
        embeddings: Embeddings = "auto",
        embedding_params: TrainParams | None = None,
    ) -> None:
        """``embeddings`` says whether item vectors are trained and by which algorithm, as
        ``reco eval --embeddings`` does ("auto": when the term is weighted, by ALS unless
        ``embedding_params`` names another); ``embedding_params`` says how (factors,
        iterations...), None: with ``TrainParams``' defaults, as ``reco eval`` does."""
        if embedding_params is not None and embeddings not in ("auto", embedding_params.algorithm):
            raise ValueError(
                f"embedding_params train {embedding_params.algorithm}, not {embeddings}"
            )
        self.dataset = dataset
        self.embeddings = embeddings
        self.embedding_params = embedding_params
        self.splits = [engine_view(s, dataset.own_sessions) for s in splits]
        self.base = base
        self.resamples, self.seed = resamples, seed
        self._scores: dict[str, Score] = {}
        self._stores: list[OrderedDict[str, Trained]] = [OrderedDict() for _ in splits]
        self._keep = stores
        self._checked = False
        self.spent_s = 0.0
        """Time spent evaluating points (cached scores cost nothing)."""
        self.start: Point = {}
        """The search's start: progress lines name only the values that differ from it."""

    @property
    def predictions(self) -> int:
        return sum(
            d.predictions if isinstance(d, NextData) else len(d.targets) for d in self.splits
        )

    @property
    def evaluations(self) -> int:
        """Points scored so far (each once)."""
        return len(self._scores)

    def fits(self, point: Point, name: str, values: Sequence[float], deadline: float) -> bool:
        """Whether scoring ``point`` at each of ``values`` of ``name`` should end before
        ``deadline`` (``time.monotonic()``), at the mean time of an evaluation so far."""
        new = sum(self._key(point | {name: v}) not in self._scores for v in values)
        mean = self.spent_s / self.evaluations if self.evaluations else 0.0
        return time.monotonic() + new * mean <= deadline

    @staticmethod
    def _key(point: Point) -> str:
        return json.dumps({k: float(v) for k, v in point.items()}, sort_keys=True)

    def score(self, point: Point) -> Score:
        key = self._key(point)
        if key not in self._scores:
            clock = time.perf_counter()
            self._scores[key] = self._measure(configure(self.base, point))
            s = self._scores[key]
            figures = "  ".join(f"{m} {s.value(m):.4f}" for m in self.dataset.metrics)
            took = time.perf_counter() - clock
            self.spent_s += took
            start = self.start
            changed = {k: v for k, v in point.items() if k not in start or v != start[k]}
            log.info(
                "%s %s: %s (%.1f s)",
                self.dataset.name,
                show_point(changed or "start"),
                figures,
                took,
            )
        return self._scores[key]

    def _measure(self, settings: EngineSettings) -> Score:
        counts: list[int] = []
        sums: dict[str, list[float]] = {m: [] for m in self.dataset.metrics}
        for fold, data in enumerate(self.splits):
            fold_counts, fold_sums = self._fold(fold, data, settings)
            counts += fold_counts
            for metric in sums:
                sums[metric] += fold_sums[metric]
        return Score(tuple(counts), {m: tuple(v) for m, v in sums.items()})

    def _fold(
        self, fold: int, data: NextData | UserData, settings: EngineSettings
    ) -> tuple[list[int], dict[str, list[float]]]:
        # As reco eval does: item vectors trained on the training part when weighted.
        vectors = embedding_params(self.embeddings, settings)
        if vectors is not None and self.embedding_params is not None:
            # The session gap follows the engine's settings, as reco eval's does.
            vectors = replace(self.embedding_params, session_gap_s=vectors.session_gap_s)
        # The store and the vectors depend on every setting but the request-time ones.
        build = settings.model_dump_json(exclude=QUERY_FIELDS) + repr(vectors)
        cache = self._stores[fold]
        trained = cache.get(build)
        if trained is None:
            engine = EngineSystem(settings, embeddings=vectors)
        else:
            engine = TrainedEngine(settings, *trained)
        counts, sums, outcome = self._replay(data, engine)
        if trained is not None:
            cache.move_to_end(build)
        else:
            cache[build] = (engine.store, engine.model)
            if len(cache) > self._keep:
                cache.popitem(last=False)
            if not self._checked:
                # The reused model must rank exactly as a freshly trained one.
                again = self._replay(data, TrainedEngine(settings, engine.store, engine.model))
                if (again[0], again[1]) != (counts, sums):
                    raise RuntimeError("a reused trained store ranks differently from a fresh one")
                self._checked = True
        for metric, values in sums.items():
            name, k = metric.split("@")
            if not math.isclose(
                sum(values) / sum(counts), outcome.board.value(name, int(k)), abs_tol=1e-9
            ):
                raise RuntimeError(
                    f"{metric} recomputed from the rankings differs from the harness's"
                )
        return counts, sums

    def _replay(
        self, data: NextData | UserData, engine: EngineSystem
    ) -> tuple[list[int], dict[str, list[float]], Outcome]:
        system = Recorder(engine)
        if isinstance(data, NextData):
            outcome = run_next(system, data, online=False, kmax=KMAX)
        else:
            outcome = run_user(system, data, kmax=KMAX)
        by_session: dict[int, list[Position]] = {}
        for index, position in positions(data, system.rankings):
            by_session.setdefault(index, []).append(position)
        counts = [len(p) for p in by_session.values()]
        sums: dict[str, list[float]] = {}
        for metric in self.dataset.metrics:
            name, k = metric.split("@")
            fn = METRIC_FNS[name]
            sums[metric] = [sum(fn(p, int(k)) for p in ps) for ps in by_session.values()]
        return counts, sums, outcome


# -- coordinate search ---------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[float, ...]
    note: str = ""


@dataclass
class SearchResult:
    dataset: str
    objective: str
    start: Point
    point: Point
    steps: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    finished: bool = True
    """False: the time budget ended the search before it converged (or ran its passes)."""


def coordinate_search(
    bench: InnerBench,
    start: Point,
    axes: Sequence[Axis],
    *,
    passes: int,
    deadline: float | None = None,
    ablation: bool = True,
) -> SearchResult:
    """Axis by axis (passes until nothing moves): keep the current value unless another is
    better beyond noise; then take the plateau's value with the best smoothed objective.

    ``deadline`` (a ``time.monotonic()`` value): an axis is tried only when its new values,
    at the mean time an evaluation has taken so far, fit before it; otherwise the search
    ends there with the point it holds (``finished`` False). ``ablation``: also score the
    chosen point with each weighted signal at 0.
    """
    reported, objective = bench.dataset.metrics
    result = SearchResult(bench.dataset.name, objective, dict(start), dict(start))
    bench.start = dict(start)
    stats = {"resamples": bench.resamples, "seed": bench.seed}
    bench.score(result.point)
    for number in range(1, passes + 1):
        moved = False
        for axis in axes:
            point = result.point
            values = sorted({*axis.values, point[axis.name]})
            if deadline is not None and not bench.fits(point, axis.name, values, deadline):
                log.info("time budget spent: the search ends before %s", axis.name)
                result.finished = False
                break
            scores = [bench.score(point | {axis.name: v}) for v in values]
            best = max(range(len(values)), key=lambda i: scores[i].value(objective))
            rows, plateau = [], []
            for value, s in zip(values, scores, strict=True):
                diff = s.minus(scores[best], objective, **stats)
                flat = diff[2] >= 0  # not worse than the best beyond noise
                if flat:
                    plateau.append(value)
                rows.append(
                    {"value": value, reported: s.value(reported), objective: s.value(objective)}
                    | {"minus_best": list(diff), "plateau": flat}
                )
            current = values.index(point[axis.name])
            choice = point[axis.name]
            if choice not in plateau:
                # Only a value that beats the current one beyond noise may replace it.
                smooth = _smoothed([s.value(objective) for s in scores])
                better = [
                    i
                    for i, v in enumerate(values)
                    if v in plateau and scores[i].minus(scores[current], objective, **stats)[1] > 0
                ]
                if better:
                    choice, moved = values[max(better, key=smooth.__getitem__)], True
                    result.point = point | {axis.name: choice}
            edge = choice != point[axis.name] and choice in (values[0], values[-1])
            result.steps.append(
                {"pass": number, "axis": axis.name, "note": axis.note, "before": point[axis.name]}
                | {"chosen": choice, "plateau": plateau, "rows": rows, "edge": edge}
            )
            change = f"{point[axis.name]:g} -> {choice:g}" + (" (grid edge)" if edge else "")
            log.info("%s: plateau %s; %s", axis.name, show_values(axis, plateau), change)
        if not moved or not result.finished:
            break
    a, b = bench.score(result.point), bench.score(result.start)
    result.final = {
        "predictions": sum(a.counts),
        "sessions": len(a.counts),
        "chosen": {m: [a.value(m), *a.interval(m, **stats)] for m in bench.dataset.metrics},
        "start": {m: [b.value(m), *b.interval(m, **stats)] for m in bench.dataset.metrics},
        "chosen_minus_start": {m: list(a.minus(b, m, **stats)) for m in bench.dataset.metrics},
        "without_minus_chosen": {},
        "evaluations": bench.evaluations,
        "evaluation_s": round(bench.spent_s, 1),
    }
    # The inner ablation, paired: what each signal brings at the chosen point.
    for signal in signals(configure(bench.base, result.point)) if ablation else ():
        off = bench.score(result.point | {f"weights.{signal}": 0.0})
        result.final["without_minus_chosen"][signal] = {
            m: list(off.minus(a, m, **stats)) for m in bench.dataset.metrics
        }
    return result


def _smoothed(values: Sequence[float]) -> list[float]:
    """Each value averaged with its grid neighbours: a point inside a plateau beats a spike."""
    out = []
    for i in range(len(values)):
        near = values[max(0, i - 1) : i + 2]
        out.append(sum(near) / len(near))
    return out


def signals(settings: EngineSettings) -> list[str]:
    """The weighted signals (an ``embedding`` weight appears here once it is above 0)."""
    return [name for name, weight in settings.weights.model_dump().items() if weight > 0]


def show_point(point: Mapping[str, float] | str) -> str:
    if isinstance(point, str):
        return point
    return " ".join(f"{k.removeprefix('weights.')}={v:g}" for k, v in point.items())


def show_values(axis: Axis, values: Sequence[float]) -> str:
    if axis.note == "days":
        return "{" + ", ".join(f"{v / DAY:g} d" for v in values) + "}"
    return "{" + ", ".join(f"{v:g}" for v in values) + "}"
