"""``reco eval``: load, split, run the engine and the baselines, summarise.

Every system runs alone on the same data, one after another, so their clocks do not share
the processor; the same seed gives every system the same bootstrap resamples.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reco.embeddings.training import TrainParams
from reco.evaluation import report
from reco.evaluation.baselines import BASELINES
from reco.evaluation.data import (
    USER_SPLIT,
    Loaded,
    load,
    next_data,
    split_by_days,
    user_data,
)
from reco.evaluation.engine import EngineSystem
from reco.evaluation.protocols import Outcome, run_next, run_user
from reco.evaluation.purchase import (
    PURCHASE_SPLIT,
    Unit,
    purchase_data,
    run_purchase,
    split_by_time,
)
from reco.evaluation.systems import System
from reco.events import Event
from reco.exceptions import ConfigError
from reco.ranking.training import RankerParams
from reco.settings import EngineSettings

Embeddings = Literal["auto", "none", "item2vec", "als"]
"""``--embeddings``: which item vectors the engine trains first (auto: ALS when weighted)."""


class EvalConfigError(ConfigError, ValueError):
    """Options of ``reco eval`` that do not go together; the message says which."""


@dataclass(frozen=True)
class EvalConfig:
    train: Path
    fmt: str
    test: Path | None = None
    split_days: float | None = None
    protocol: Literal["next", "user"] = "next"
    mode: Literal["static", "online"] = "static"
    k: int = 20
    baselines: tuple[str, ...] = tuple(BASELINES)
    engine: bool = True
    resamples: int = 2000
    seed: int = 0
    progress: bool = True
    target: Literal["next", "purchase"] = "next"
    """next: the next event's item; purchase: the item of each purchase event (see
    ``reco.evaluation.purchase``)."""
    unit: Unit = "session"
    """Purchase target only: rank for the test session, or for the user over their history."""
    embeddings: Embeddings = "auto"
    """Item vectors the engine trains on the training part (as ``reco train`` would) before
    the replay; auto: ALS when the ``embedding`` weight is above 0, else none."""
    ranker: bool = False
    """Also run ``engine+ranker``: the engine with a ranker trained on a replay of the
    training part (as ``reco train --ranker`` would), next to the weighted sum alone."""


def factories(config: EvalConfig, settings: EngineSettings) -> list[Callable[[], System]]:
    out: list[Callable[[], System]] = []
    if config.engine:
        params = embedding_params(config.embeddings, settings)
        out.append(lambda: EngineSystem(settings, embeddings=params))
        if config.ranker:
            # Trained on requests like the protocol's: a user's whole history without the
            # items already rated (user protocol), or a session's prefix, seen items kept.
            # With the purchase target it learns from the requests before purchases, seen
            # items kept: the purchase protocol ranks them too (a buyer comes back to one).
            user = config.protocol == "user" or config.unit == "user"
            ranker = RankerParams(
                unit="user" if user else "session",
                exclude_seen=config.protocol == "user",
                target=config.target,
            )
            out.append(lambda: EngineSystem(settings, embeddings=params, ranker=ranker))
    out.extend(BASELINES[name] for name in config.baselines)
    return out


def embedding_params(algorithm: Embeddings, settings: EngineSettings) -> TrainParams | None:
    """How the engine's item vectors are trained for an evaluation (``--embeddings``):
    "auto" trains ALS when the ``embedding`` weight is above 0; "none" trains nothing."""
    if algorithm == "auto":
        algorithm = "als" if settings.weights.embedding > 0 else "none"
    if algorithm == "none":
        return None
    return TrainParams(algorithm=algorithm, session_gap_s=settings.session_gap_s)


def run(config: EvalConfig, settings: EngineSettings | None = None) -> dict[str, Any]:
    """Evaluate and return the JSON-ready result (see ``report`` for what it holds)."""
    _check(config)
    settings = settings or EngineSettings()
    started = time.perf_counter()
    loaded = load(config.train, config.fmt, settings, prefix="t", progress=config.progress)
    result: dict[str, Any] = {"dataset": config.train.name, "protocol": config.protocol}
    result.update(k=config.k, mode="static" if config.protocol == "user" else config.mode)
    if config.protocol == "user":
        outcomes = _run_user(config, settings, loaded, result, started)
        figures = report.USER_FIGURES
    elif config.target == "purchase":
        result.update(target=config.target, unit=config.unit)
        outcomes = _run_purchase(config, settings, loaded, result, started)
        figures = report.NEXT_FIGURES
    else:
        outcomes = _run_next(config, settings, loaded, result, started)
        figures = report.NEXT_FIGURES
    result["prediction_events"] = outcomes[0].board.predictions if outcomes else 0
    result["engine_settings"] = _engine_settings(settings)
    result["timing"] = report.TIMING
    result["systems"] = {
        o.name: report.summarise(o, figures, resamples=config.resamples, seed=config.seed)
        for o in outcomes
    }
    named = {o.name: o for o in outcomes}
    if "engine" in named and "engine+ranker" in named:
        result["paired"] = {
            "engine+ranker - engine": report.paired(
                named["engine+ranker"], named["engine"], figures,
                resamples=config.resamples, seed=config.seed,
            )
        }  # fmt: skip
    return result


def _check(config: EvalConfig) -> None:
    """Refuse a bad configuration before the data is read."""
    unknown = [b for b in config.baselines if b not in BASELINES]
    if unknown:
        known = ", ".join(BASELINES)
        raise EvalConfigError(f"unknown baseline(s) {', '.join(unknown)}; known: {known}")
    if config.k < 1:
        raise EvalConfigError(f"--k must be at least 1, got {config.k}")
    if config.target == "purchase" and config.protocol != "next":
        raise EvalConfigError("--target purchase belongs to the next protocol")
    if config.unit != "session" and config.target != "purchase":
        raise EvalConfigError("--unit applies to --target purchase only")
    if config.protocol == "user":
        if config.test is not None or config.split_days is not None:
            raise EvalConfigError(
                "the user protocol holds out each user's last event: no test split"
            )
        if config.mode == "online":
            raise EvalConfigError("the user protocol has no replay, so no online mode")
    elif (config.test is None) == (config.split_days is None):
        raise EvalConfigError(
            "the next protocol needs exactly one of --test FILE and --split-days D"
        )


def _run_user(
    config: EvalConfig,
    settings: EngineSettings,
    loaded: Loaded,
    result: dict[str, Any],
    started: float,
) -> list[Outcome]:
    data = user_data(loaded.events)
    result.update(split=USER_SPLIT, catalogue=len(data.catalogue))
    result["events"] = {"read": loaded.read, "valid": len(loaded.events), "train": len(data.train)}
    result["sessions"] = {"users": data.counts["users"], "users_kept": len(data.targets)}
    result["counts"] = data.counts
    result["rejected_events"] = _rejected(loaded.rejected)
    result["load_s"] = round(time.perf_counter() - started, 3)
    return [
        run_user(make(), data, kmax=config.k, progress=config.progress)
        for make in factories(config, settings)
    ]


def _parts(
    config: EvalConfig,
    settings: EngineSettings,
    loaded: Loaded,
    split_off: Callable[[list[Event], float], tuple[list[Event], list[Event]]],
    describe: Callable[[float], str],
) -> tuple[list[Event], list[Event], int, Counter[str], str]:
    """The train and test events, what was read and refused, and how they were split:
    the ``--test`` file, else ``split_off`` the last ``--split-days`` days."""
    if config.test is None:
        days = config.split_days or 0.0
        train, test = split_off(list(loaded.events), days)
        return train, test, loaded.read, loaded.rejected, describe(days)
    extra = load(config.test, config.fmt, settings, prefix="s", progress=config.progress)
    split = f"given files: T = {config.train.name}, S = {config.test.name}"
    read, rejected = loaded.read + extra.read, loaded.rejected + extra.rejected
    return list(loaded.events), list(extra.events), read, rejected, split


def _next_split(days: float) -> str:
    return (
        f"by time: a session is in S when its last event is less than {days:g} days "
        "before the dataset's last event; all other sessions are T"
    )


def _run_next(
    config: EvalConfig,
    settings: EngineSettings,
    loaded: Loaded,
    result: dict[str, Any],
    started: float,
) -> list[Outcome]:
    train, test, read, rejected, split = _parts(
        config, settings, loaded, split_by_days, _next_split
    )
    data = next_data(train, test)
    c = data.counts
    result.update(split=split, catalogue=len(data.catalogue))
    result["events"] = {
        "read": read,
        "train": c["train_events"],
        "test": c["test_events"],
        "test_unknown_item_removed": c["test_events_unknown_item"],
        "test_kept": c["test_events_kept"],
    }
    result["sessions"] = {
        "train": c["train_sessions"],
        "test": c["test_sessions"],
        "test_removed_shorter_than_2": c["test_sessions_removed"],
        "test_kept": c["test_sessions_kept"],
    }
    result["rejected_events"] = _rejected(rejected)
    result["load_s"] = round(time.perf_counter() - started, 3)
    online = config.mode == "online"
    return [
        run_next(make(), data, online=online, kmax=config.k, progress=config.progress)
        for make in factories(config, settings)
    ]


def _run_purchase(
    config: EvalConfig,
    settings: EngineSettings,
    loaded: Loaded,
    result: dict[str, Any],
    started: float,
) -> list[Outcome]:
    train, test, read, rejected, split = _parts(
        config, settings, loaded, split_by_time, lambda days: PURCHASE_SPLIT.format(days=days)
    )
    data = purchase_data(train, test, config.unit)
    result.update(split=split, catalogue=len(data.catalogue), counts=data.counts)
    result["events"] = {"read": read, "train": len(train), "test": len(test)}
    result["rejected_events"] = _rejected(rejected)
    result["load_s"] = round(time.perf_counter() - started, 3)
    online = config.mode == "online"
    return [
        run_purchase(make(), data, online=online, kmax=config.k, progress=config.progress)
        for make in factories(config, settings)
    ]


def _rejected(rejected: Counter[str]) -> dict[str, int]:
    """The events the engine's validator refused, by reason (top 5), and their total."""
    return dict(rejected.most_common(5)) | {"total": sum(rejected.values())}


def _engine_settings(settings: EngineSettings) -> dict[str, Any]:
    """The settings that shape the engine's ranking, so a figure can be reproduced."""
    return {
        "weights": settings.weights.model_dump(),
        "event_weights": settings.event_weights,
        "coview_half_life_s": settings.coview_half_life_s,
        "popularity_half_life_s": settings.popularity_half_life_s,
        "coview_window": settings.coview_window,
        "sequence_steps": settings.sequence_steps,
        "context_items": settings.context_items,
        "related_per_item": settings.related_per_item,
        "history_decay": settings.history_decay,
        "session_gap_s": settings.session_gap_s,
    }
