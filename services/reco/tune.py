"""``reco tune``: the weighted sum's weights and request-time caps, learned from the shop's
own events, published as a settings override the api applies like a model.

Defaults chosen on public datasets do not carry over to every shop (docs/tuning.md): on a
ratings log, dropping co-view helps and raising the sequence weight hurts. This one-shot job
(a Kubernetes CronJob runs it, like ``reco train``) reads the archived events, splits them
again by time (inner-train: everything before the sessions that end in the last
``test_days``; inner-test: those sessions), and runs the coordinate search of
``reco.evaluation.search`` over the settings a request reads (``TunedSettings``), starting
from what the api serves now. Every point is scored by replaying inner-test through the
engine's own processor, store and recommender trained on inner-train; a value replaces the
current one only when it is better beyond noise (paired session bootstrap, 95 %). The
search stops when nothing moves or when its next step would not fit in ``budget_s``.

Only when the chosen point beats the start beyond noise on the objective (MRR@20; NDCG@10
for the user protocol) is it published, as a new version of kind ``tuned-settings``; every
api replica applies it within ``model_refresh_s``. Otherwise nothing is published and the
api keeps serving what it serves. ``reco tune --clear`` publishes an empty result: the
configured settings again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from reco.embeddings import EMBEDDINGS
from reco.evaluation.data import NextData, UserData, next_data, sessionize, user_data
from reco.evaluation.search import (
    Axis,
    InnerBench,
    Point,
    SearchResult,
    configure,
    coordinate_search,
    inner_folds,
    read_point,
)
from reco.events import Event
from reco.ports import ModelStore, ModelVersion
from reco.settings import TUNED_SETTINGS, EngineSettings, TunedSettings, TuneSettings
from reco.train import distinct_events, open_models, params_of

log = logging.getLogger(__name__)

# The signals first: they move a shop's figures most, and the budget may end the search
# early. The caps last: they trade quality for request cost and rarely move it.
AXES = (
    Axis("weights.coview", (0, 0.5, 1, 2, 4)),
    Axis("weights.sequence", (0, 0.5, 1, 2, 4)),
    Axis("weights.neighbours", (0, 0.5, 1, 2, 4)),
    Axis("weights.popularity", (0, 0.03, 0.1, 0.3, 1)),
    Axis("weights.recency", (0, 1, 2, 4, 8)),
    Axis("weights.embedding", (0, 0.25, 0.5, 1, 2)),
    Axis("history_decay", (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)),
    Axis("context_items", (3, 5, 10, 20)),
    Axis("neighbour_k", (10, 25, 50, 100)),
    Axis("neighbour_sample", (50, 100, 200, 500)),
    Axis("related_per_item", (10, 25, 50, 100)),
)
PASSES = 2


class NothingToTune(RuntimeError):
    """The log holds too little to compare settings on."""


@dataclass(frozen=True)
class ShopLog:
    """The shop's log as the search sees it (``reco.evaluation.search.Subject``)."""

    protocol: str
    name: str = "log"
    own_sessions: bool = True
    """The events carry the sessions the engine's own rule gave them (``sessionize``)."""

    @property
    def metrics(self) -> tuple[str, str]:
        return ("HR@10", "NDCG@10") if self.protocol == "user" else ("HR@20", "MRR@20")


@dataclass
class TuneReport:
    """What the search found and whether it was published."""

    objective: str
    start: Point
    chosen: Point
    figures: dict[str, dict[str, list[float]]]
    """Per metric: ``start`` and ``chosen`` (value, 95 % interval), ``difference``
    (chosen - start, paired 95 % interval)."""
    predictions: int
    sessions: int
    evaluations: int
    finished: bool
    elapsed_s: float
    published: ModelVersion | None = None
    pruned: int = 0
    verdict: str = ""
    changed: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        v = self.published
        return {
            "published": None if v is None else {"version": v.version, "kind": v.kind},
            "verdict": self.verdict,
            "objective": self.objective,
            "changed": self.changed,
            "figures": self.figures,
            "predictions": self.predictions,
            "sessions": self.sessions,
            "evaluations": self.evaluations,
            "finished": self.finished,
            "elapsed_s": self.elapsed_s,
            "pruned": self.pruned,
        }


def run(
    settings: TuneSettings, *, events: Iterable[Event] | None = None, dry_run: bool = False
) -> TuneReport:
    """Search on the configured log (or on ``events``, already validated) and publish the
    result when it beats the start beyond noise (not with ``dry_run``)."""
    models = open_models(settings)
    try:
        report = tune(
            list(distinct_events(settings) if events is None else events), settings, models
        )
        if dry_run:
            report.verdict += " (dry run: nothing published)"
        elif report.changed and _beats_start(report):
            publish(models, settings, report)
        return report
    finally:
        models.close()


def clear(settings: TuneSettings) -> ModelVersion:
    """Publish an empty result: the api serves its configured settings again."""
    models = open_models(settings)
    try:
        version = models.publish(
            TUNED_SETTINGS, b"{}", params={"cleared": True}, metrics={"cleared_at": time.time()}
        )
        log.info("tuned settings cleared (version %d): the configured ones apply", version.version)
        return version
    finally:
        models.close()


def tune(events: Sequence[Event], settings: TuneSettings, models: ModelStore) -> TuneReport:
    """The search over ``events`` from what the api serves now (no publishing here)."""
    started = time.monotonic()
    configured = engine_settings(settings)
    base = serving(configured, models)
    ordered = sessionize(sorted(events, key=lambda e: e.timestamp), settings.session_gap_s)
    splits = inner_splits(ordered, settings)
    # The embedding term is searched only when the api has vectors to score it with.
    vectors = models.latest(EMBEDDINGS) is not None
    axes = [a for a in AXES if vectors or a.name != "weights.embedding"]
    subject = ShopLog(settings.protocol)
    bench = InnerBench(
        subject,
        splits,
        base,
        resamples=1000,
        seed=0,
        stores=2,
        embeddings="auto" if vectors else "none",
        embedding_params=params_of(settings) if vectors else None,
    )
    log.info(
        "tuning on %d events: %d inner predictions; %s vectors; budget %g s",
        len(ordered), bench.predictions, "with" if vectors else "without", settings.budget_s,
    )  # fmt: skip
    start = read_point(base, [a.name for a in axes])
    # Each point replays the log through a processor that says where it resumes: noise here.
    replays = logging.getLogger("reco.processor")
    level = replays.level
    replays.setLevel(max(level, logging.WARNING))
    try:
        found = coordinate_search(
            bench,
            start,
            axes,
            passes=PASSES,
            deadline=started + settings.budget_s,
            ablation=False,
        )
    finally:
        replays.setLevel(level)
    return _report(found, time.monotonic() - started)


def engine_settings(settings: EngineSettings) -> EngineSettings:
    """The engine's own settings out of the job's (which also name backends and training)."""
    return EngineSettings(**settings.model_dump(include=set(EngineSettings.model_fields)))


def serving(configured: EngineSettings, models: ModelStore) -> EngineSettings:
    """What the api serves: the configured settings with the newest result over them."""
    latest = models.latest(TUNED_SETTINGS) if configured.tuned_settings else None
    if latest is None:
        return configured
    try:
        tuned = TunedSettings.model_validate(orjson.loads(models.artifact(latest.version)))
    except (ValueError, KeyError) as exc:
        # The api skips an unreadable version too: it serves the configured settings.
        log.warning("tuned settings version %d unreadable, starting from the configured: %s",
                    latest.version, exc)  # fmt: skip
        return configured
    return tuned.apply(configured)


def inner_splits(events: Sequence[Event], settings: TuneSettings) -> list[NextData | UserData]:
    """The inner parts to score on; raises ``NothingToTune`` when they hold no prediction."""
    if not events:
        raise NothingToTune("the log holds no events yet: tune once the shop has traffic")
    if settings.protocol == "user":
        users = user_data(events)
        if not users.targets:
            raise NothingToTune(
                "no user has a last event on an item seen before: the user protocol needs "
                "users with several events; try --protocol next"
            )
        return [users]
    splits: list[NextData | UserData] = []
    for train, test in inner_folds(events, settings.test_days, settings.folds):
        data = next_data(train, test)
        if data.predictions:
            splits.append(data)
    if not splits:
        days = (events[-1].timestamp - events[0].timestamp) / 86400
        raise NothingToTune(
            f"the log's last {settings.test_days:g} days (of {days:.1f}) hold no session of two "
            "or more items seen before them: give --test-days a window with such sessions"
        )
    return splits


def publish(models: ModelStore, settings: TuneSettings, report: TuneReport) -> None:
    configured = engine_settings(settings)
    tuned = TunedSettings.between(configured, configure(configured, report.chosen))
    report.published = models.publish(
        TUNED_SETTINGS,
        orjson.dumps(tuned.model_dump(exclude_none=True)),
        params={
            "protocol": settings.protocol, "test_days": settings.test_days,
            "folds": settings.folds, "budget_s": settings.budget_s,
            "since_days": settings.since_days, "start": report.start, "chosen": report.chosen,
        },
        metrics=report.as_dict() | {"published": None},
    )  # fmt: skip
    report.pruned = models.prune(TUNED_SETTINGS, settings.keep_versions)
    report.verdict = f"published as version {report.published.version}: {tuned.describe()}"
    log.info("tuned settings %s", report.verdict)


def _beats_start(report: TuneReport) -> bool:
    return report.figures[report.objective]["difference"][1] > 0


def _report(found: SearchResult, elapsed: float) -> TuneReport:
    final = found.final
    objective = found.objective
    figures = {
        m: {
            "start": final["start"][m],
            "chosen": final["chosen"][m],
            "difference": final["chosen_minus_start"][m],
        }
        for m in final["chosen"]
    }
    changed = {k: [found.start[k], v] for k, v in found.point.items() if v != found.start[k]}
    report = TuneReport(
        objective=objective,
        start=found.start,
        chosen=found.point,
        figures=figures,
        predictions=final["predictions"],
        sessions=final["sessions"],
        evaluations=final["evaluations"],
        finished=found.finished,
        elapsed_s=round(elapsed, 1),
        changed=changed,
    )
    d = figures[objective]["difference"]
    gain = f"{objective} {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"
    if not changed:
        report.verdict = "kept: no setting beat the served ones beyond noise"
    elif not _beats_start(report):
        report.verdict = f"kept: the chosen settings' gain is within noise ({gain})"
    else:
        report.verdict = f"better: {gain}"
    if not found.finished:
        report.verdict += "; the time budget ended the search early"
    log.info("tune %s (%d evaluations, %.0f s)", report.verdict, report.evaluations, elapsed)
    return report
