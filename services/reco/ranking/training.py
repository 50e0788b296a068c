"""Training the ranker: examples replayed from the event log, LightGBM's LambdaRank on them.

**Examples without leakage.** The events are replayed in time order through the engine's
own path (``EngineSystem``: the processor applying each event to an in-memory store, the
api's ``Recommender`` reading it). Before each event of a session that already has one, the
session's candidates are taken as a request would see them at that moment (the weighted
sum's first ``candidates``, with ``candidate_features``), labelled 1 for the item the event
names and 0 for the others; then the event is applied. With the purchase target only the
requests before a purchase are recorded, labelled by the item bought: a ranker for the
pages whose goal is the sale rather than the next click. A request whose next item is not
among the candidates teaches nothing to a listwise objective and is left out (counted).

**Training.** The requests are split by time: the last ``valid_share`` validate, with early
stopping on NDCG@20. LightGBM's LambdaRank, rather than XGBoost's ``rank:ndcg``: the same
objective, and LightGBM predicts straight from a NumPy array (no DMatrix per request),
which keeps the serving cost of ~200 candidates well under a millisecond.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from reco.embeddings.training import TrainParams, corpus
from reco.embeddings.training import train as train_embeddings
from reco.events import Event
from reco.ports import Catalog
from reco.ranking.features import FEATURES, Matrix, candidate_features, catalog_ids
from reco.ranking.model import RankerModel, lightgbm_module
from reco.settings import EngineSettings

log = logging.getLogger(__name__)

NDCG_AT = 20
Unit = Literal["session", "user"]
Target = Literal["next", "purchase"]
PURCHASE = "purchase"


class TooFewExamples(ValueError):
    """The log holds too few requests whose next item was among the candidates."""


@dataclass
class Examples:
    """One group per replayed request: its candidates' features and labels, in time order."""

    features: list[Matrix] = field(default_factory=list)
    labels: list[npt.NDArray[np.int32]] = field(default_factory=list)
    requests: int = 0
    """Requests replayed (with or without their next item among the candidates)."""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def rows(self) -> int:
        return sum(len(y) for y in self.labels)


def replay_examples(
    events: Sequence[Event],
    settings: EngineSettings,
    *,
    candidates: int,
    embeddings: TrainParams | None = None,
    warmup: float = 0.3,
    max_requests: int | None = None,
    unit: Unit = "session",
    exclude_seen: bool = False,
    target: Target = "next",
    catalog: Catalog | None = None,
    catalog_features: bool = True,
) -> Examples:
    """Replay ``events`` (any order; replayed in time order) and record each request's
    candidates as they were before the event that followed.

    The first ``warmup`` share of the events (by time) is applied without recording: the
    store fills as in production, and with ``embeddings`` the item vectors are trained on
    that part only, so the embedding signal of a recorded request knows nothing later than
    its last training, as the api's vectors do (vectors trained on every event would tell
    the features what comes next). ``max_requests``: record every k-th request only (every
    event is still applied). ``unit``: the requests are the session's (a shop's pages) or
    the user's (their whole recent history). ``catalog``: the shop's, for the catalog
    features (without it, what the replayed events' properties say of their items, learned
    as they come); ``catalog_features=False`` leaves those columns unknown.
    ``exclude_seen``: leave out of each request the candidates the page would not show (the
    session's or user's items so far), as the api's ``exclude_seen`` does; their features
    are computed among the others all the same, as in the api, which reranks first and
    applies its rules after. ``target``: record
    the request before every event (``next``), or before each purchase only."""
    # The evaluation package imports this module (``reco eval --ranker``).
    from reco.evaluation.data import sessionize
    from reco.evaluation.engine import EngineSystem

    ordered = sessionize(sorted(events, key=lambda e: e.timestamp), settings.session_gap_s)
    cut = int(len(ordered) * warmup)
    key = _unit_key(unit)
    purchases_only = target == PURCHASE
    eligible = _eligible(ordered, cut, key, purchases_only)
    every = max(1, math.ceil(eligible / max_requests)) if max_requests else 1
    engine = EngineSystem(settings, catalog=catalog)
    if embeddings is not None and cut:
        data = corpus(ordered[:cut], settings.event_weights, settings.session_gap_s)
        engine.model = train_embeddings(data, embeddings)
    engine.fit((), online=True)
    started = time.perf_counter()
    out = Examples()
    history: dict[str, set[str]] = {}
    for index, event in enumerate(ordered):
        who = key(event)
        seen = history.setdefault(who, set())
        if index >= cut and seen and (not purchases_only or event.type == PURCHASE):
            out.requests += 1
            if (out.requests - 1) % every == 0:
                if unit == "user":
                    context, ranked = engine.candidates(user_id=who)
                else:
                    context, ranked = engine.candidates(session_id=who)
                entries = (
                    engine.catalog_entries(catalog_ids(ranked, context, candidates))
                    if catalog_features
                    else None
                )
                # The time the api would see: the last event's (as in reco eval's replay).
                items, features = candidate_features(
                    ranked, context, candidates, entries, engine.now
                )
                if exclude_seen:
                    shown = [i for i, item in enumerate(items) if item not in seen]
                    items, features = [items[i] for i in shown], features[shown]
                labels = np.fromiter(
                    (item == event.item_id for item in items), dtype=np.int32, count=len(items)
                )
                if len(items) >= 2 and labels.any():
                    out.features.append(features)
                    out.labels.append(labels)
        engine.observe(event)
        seen.add(event.item_id)
    log.info(
        "ranker examples: %d events replayed (the first %d to warm up), %d %s requests "
        "before %s (every %d recorded), %d with the item among %d candidates, %.0f s",
        len(ordered), cut, out.requests, unit,
        "a purchase" if purchases_only else "an event", every, len(out), candidates,
        time.perf_counter() - started,
    )  # fmt: skip
    return out


def _unit_key(unit: Unit) -> Callable[[Event], str]:
    if unit == "user":
        return lambda e: e.user_id
    return lambda e: e.session_id or e.user_id


def _eligible(
    ordered: Sequence[Event], start: int, key: Callable[[Event], str], purchases_only: bool
) -> int:
    """How many events from ``start`` on follow an earlier event of their session or user
    (each is a request); of the purchases only with ``purchases_only``."""
    seen: set[str] = set()
    count = 0
    for index, event in enumerate(ordered):
        who = key(event)
        wanted = not purchases_only or event.type == PURCHASE
        count += index >= start and who in seen and wanted
        seen.add(who)
    return count


@dataclass(frozen=True)
class RankerParams:
    candidates: int = 200
    """Candidates of the weighted sum the ranker orders per request."""
    warmup: float = 0.3
    """Share of the events (by time) applied before requests are recorded; the item vectors
    are trained on it. (0.3 recorded more requests and scored better than 0.5 on the
    Diginetica sample, docs/evaluation.md.)"""
    valid_share: float = 0.2
    rounds: int = 500
    patience: int = 30
    """Rounds without a better validation NDCG@20 before training stops."""
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    max_requests: int | None = 100_000
    unit: Unit = "session"
    """Whose requests the replay records: the session's, or the user's."""
    exclude_seen: bool = False
    """Leave the requester's items so far out of each request, as the api's rule does."""
    target: Target = "next"
    """What the recorded requests are labelled by: the next event's item, or the item of
    each purchase (the requests before the others are not recorded)."""
    catalog: bool = True
    """Learn from the catalog features (category match, price ratio, age); without, their
    columns stay unknown, and the api reads no catalog to rerank (docs/evaluation.md says
    what they cost)."""
    seed: int = 0


def fit(examples: Examples, params: RankerParams) -> tuple[RankerModel, dict[str, Any]]:
    """Train on the earlier requests, stop early on the later ones; the model and what the
    validation showed (NDCG@20 of the weighted sum's order and of the model's)."""
    n = len(examples)
    cut = int(n * (1 - params.valid_share))
    if cut < 20 or n - cut < 5:
        what = "purchased" if params.target == PURCHASE else "next"
        raise TooFewExamples(
            f"{n} requests with their {what} item among the candidates: the ranker needs a "
            "few hundred; train it once the shop has more sessions of two or more events"
            + (" and more purchases, or with the next target" if what == "purchased" else "")
        )
    lightgbm = lightgbm_module()
    train = _dataset(lightgbm, examples, slice(0, cut))
    valid = _dataset(lightgbm, examples, slice(cut, n), reference=train)
    config = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [NDCG_AT],
        "lambdarank_truncation_level": NDCG_AT,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbose": -1,
    }
    started = time.perf_counter()
    booster = lightgbm.train(
        config,
        train,
        num_boost_round=params.rounds,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[lightgbm.early_stopping(params.patience, verbose=False)],
    )
    model = RankerModel(booster, candidates=params.candidates, catalog=params.catalog)
    held = range(cut, n)
    weighted_each = _ndcg_each(examples, held, None)
    learned_each = _ndcg_each(examples, held, model)
    weighted = sum(weighted_each) / len(held)
    learned = sum(learned_each) / len(held)
    gain = _gain(learned_each, weighted_each, seed=params.seed)
    gains = booster.feature_importance(importance_type="gain")
    total = float(gains.sum()) or 1.0
    importance = {
        name: round(float(g) / total, 4)
        for name, g in sorted(zip(FEATURES, gains, strict=True), key=lambda kv: -kv[1])
    }
    metrics = {
        "requests": examples.requests,
        "examples": n,
        "rows": examples.rows,
        "train_requests": cut,
        "valid_requests": n - cut,
        "rounds": int(booster.best_iteration or booster.current_iteration()),
        "valid_ndcg20_weighted_sum": round(weighted, 4),
        "valid_ndcg20_ranker": round(learned, 4),
        "valid_ndcg20_gain": gain,
        "fit_s": round(time.perf_counter() - started, 2),
        "importance": importance,
    }
    log.info(
        "ranker trained: %d rounds, validation NDCG@20 %.4f (weighted sum %.4f) on %d requests",
        metrics["rounds"], learned, weighted, n - cut,
    )  # fmt: skip
    return model, metrics


def beats_weighted_sum(metrics: dict[str, Any]) -> bool:
    """Whether a fitted ranker is worth serving: its validation NDCG@20 above the weighted
    sum's beyond noise (the lower end of the paired interval above 0)."""
    low: float = metrics["valid_ndcg20_gain"][1]
    return low > 0


def _dataset(lightgbm: Any, examples: Examples, part: slice, reference: Any = None) -> Any:
    features = examples.features[part]
    labels = examples.labels[part]
    return lightgbm.Dataset(
        np.vstack(features),
        np.concatenate(labels),
        group=[len(y) for y in labels],
        feature_name=list(FEATURES),
        reference=reference,
        params={"feature_pre_filter": False},
    )


def _ndcg_each(examples: Examples, groups: range, model: RankerModel | None) -> list[float]:
    """NDCG@20 of each request (one relevant item): the weighted sum's order (the rows'
    own), or the model's."""
    out = []
    for g in groups:
        labels = examples.labels[g]
        if model is None:
            order = np.arange(len(labels))
        else:
            order = np.argsort(-model.scores(examples.features[g]), kind="stable")
        position = int(np.flatnonzero(labels[order])[0])
        out.append(1.0 / math.log2(position + 2) if position < NDCG_AT else 0.0)
    return out


def _ndcg(examples: Examples, groups: range, model: RankerModel | None) -> float:
    """Mean NDCG@20 over ``groups``."""
    each = _ndcg_each(examples, groups, model)
    return sum(each) / len(each) if each else 0.0


def _gain(learned: list[float], weighted: list[float], *, seed: int) -> list[float]:
    """The ranker's NDCG@20 minus the weighted sum's on the validation requests, with a
    paired 95 % bootstrap interval over requests (requests of one session are not
    independent, so the interval is somewhat narrow)."""
    from reco.evaluation.metrics import bootstrap

    diffs = [a - b for a, b in zip(learned, weighted, strict=True)]
    ((low, high),) = bootstrap([1] * len(diffs), [diffs], resamples=1000, seed=seed, level=0.95)
    return [round(sum(diffs) / len(diffs), 4), round(low, 4), round(high, 4)]
