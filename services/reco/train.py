"""``reco train``: learn item vectors from the archived events and publish a model version.

A one-shot job (a Kubernetes CronJob runs it): read the events, train, build the nearest-
neighbour index, publish the artifact as a new version, delete versions beyond the last
few. The api replicas look for a newer version every ``model_refresh_s`` and swap it in
without a restart. A failed run publishes nothing, so the api keeps serving the last good
model.

Each event counts once, as the processor applies it once: the archive (or the embedded
log) keeps every copy of an event a client re-sent, and only the first of each
``event_id`` is read; the version's metrics say how many copies were skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reco.adapters.factory import open_archive, open_catalog, open_model_store
from reco.embeddings import EMBEDDINGS
from reco.embeddings.training import TrainParams, corpus, train
from reco.events import Event
from reco.ports import Catalog, ModelStore, ModelVersion
from reco.settings import IMPRESSION_TYPE, TrainSettings

log = logging.getLogger(__name__)


class NothingToTrain(RuntimeError):
    """The archive holds no usable events yet."""


@dataclass(frozen=True)
class TrainReport:
    version: ModelVersion
    pruned: int


def params_of(settings: TrainSettings) -> TrainParams:
    return TrainParams(
        algorithm=settings.algorithm,
        dim=settings.dim,
        epochs=settings.epochs,
        window=settings.window,
        negative=settings.negative,
        min_count=settings.min_count,
        regularization=settings.regularization,
        session_gap_s=settings.session_gap_s,
    )


def run(settings: TrainSettings) -> TrainReport:
    """Train on the configured data and publish; raises ``NothingToTrain`` on an empty
    archive (a CronJob that runs before the first events should fail visibly)."""
    events, catalog, models = _open(settings)
    try:
        return train_and_publish(events, catalog, models, settings)
    finally:
        catalog.close()
        models.close()


def train_and_publish(
    events: Iterable[tuple[Event, int]],
    catalog: Catalog,
    models: ModelStore,
    settings: TrainSettings,
) -> TrainReport:
    """Train on ``events``, each an event once with how many copies of it were archived
    (``iter_distinct_events``), and publish the model."""
    params = params_of(settings)
    started = time.perf_counter()
    since = time.time() - settings.since_days * 86400 if settings.since_days else None
    skipped = Skipped()
    data = corpus(skipped.count(events, since), settings.event_weights, settings.session_gap_s)
    read_s = time.perf_counter() - started
    if not data.events:
        raise NothingToTrain("the archive holds no events of a known type to train on")
    # The catalog only for the items whose events named no category.
    uncategorised = {i for u in data.user_items.values() for i in u} - data.categories.keys()
    found = catalog.get_many(uncategorised).values()
    model = train(data, params, {i.item_id: i.category for i in found if i.category})
    if not len(model):
        raise NothingToTrain(
            f"{data.events} events but no item with {params.min_count}+ events in a session "
            "of two or more items"
        )
    artifact = model.to_bytes()
    metrics = {
        "events": data.events,
        "duplicates_skipped": skipped.duplicates,
        "sessions": len(data.sessions),
        "items": len(model),
        "categories": len(model.centroids),
        "read_s": round(read_s, 3),
        "train_s": round(time.perf_counter() - started - read_s, 3),
    }
    version = models.publish(EMBEDDINGS, artifact, params=params.as_dict(), metrics=metrics)
    pruned = models.prune(EMBEDDINGS, settings.keep_versions)
    log.info(
        "model %s version %d published: %d items x %d, %d events (%d repeated copies "
        "skipped), %.1f MB, %d old versions pruned",
        EMBEDDINGS, version.version, len(model), model.dim, data.events, skipped.duplicates,
        len(artifact) / 1e6, pruned,
    )  # fmt: skip
    return TrainReport(version, pruned)


@dataclass(frozen=True)
class RankerReport:
    version: ModelVersion | None
    """None: not published (it did not beat the weighted sum on its validation requests)."""
    pruned: int
    metrics: dict[str, Any]
    verdict: str


def run_ranker(settings: TrainSettings) -> RankerReport:
    """``reco train --ranker``: examples replayed from the archive, LambdaRank on them, the
    model published as a new ``ranker`` version (``reco.ranking.training`` says how) when
    it beats the weighted sum beyond noise on the validation requests (the latest ones);
    otherwise nothing is published and the api keeps what it serves.

    The replay ranks with what the api serves: the configured settings with the newest
    ``reco tune`` result over them, and, when the api has item vectors (a ``reco train``
    version), vectors trained the same way on the replay's warm-up part."""
    from reco.ranking import RANKER
    from reco.ranking.training import RankerParams, beats_weighted_sum, fit, replay_examples
    from reco.tune import engine_settings, serving

    models = open_models(settings)
    catalog = _open_catalog(settings)
    try:
        skipped = Skipped()
        distinct = list(distinct_events(settings, skipped))
        if not distinct:
            raise NothingToTrain("the archive holds no events to train the ranker on")
        served = serving(engine_settings(settings), models)
        vectors = served.weights.embedding > 0 and models.latest(EMBEDDINGS) is not None
        params = RankerParams(
            candidates=settings.ranker_candidates,
            max_requests=settings.ranker_max_requests,
            unit=settings.ranker_unit,
            exclude_seen=settings.ranker_exclude_seen,
            target=settings.ranker_target,
            catalog=settings.ranker_catalog,
        )
        started = time.perf_counter()
        examples = replay_examples(
            distinct,
            served,
            candidates=params.candidates,
            embeddings=params_of(settings) if vectors else None,
            warmup=params.warmup,
            max_requests=params.max_requests,
            unit=params.unit,
            exclude_seen=params.exclude_seen,
            target=params.target,
            catalog=catalog,
            catalog_features=params.catalog,
        )
        replay_s = time.perf_counter() - started
        model, metrics = fit(examples, params)
        metrics |= {
            "events": len(distinct),
            "duplicates_skipped": skipped.duplicates,
            "replay_s": round(replay_s, 1),
            "vectors": vectors,
        }
        gain, low, high = metrics["valid_ndcg20_gain"]
        figures = f"validation NDCG@20 {gain:+.4f} [{low:+.4f}, {high:+.4f}]"
        if not beats_weighted_sum(metrics):
            # The api keeps what it serves: a model that does not beat the weighted sum
            # beyond noise on the latest requests is not worth a swap.
            log.info("ranker not published: %s against the weighted sum", figures)
            return RankerReport(None, 0, metrics, f"kept: {figures} is within noise")
        artifact = model.to_bytes()
        version = models.publish(RANKER, artifact, params=asdict(params), metrics=metrics)
        pruned = models.prune(RANKER, settings.keep_versions)
        log.info(
            "ranker version %d published: %d events, %d requests, %s, %.1f MB, %d old "
            "versions pruned",
            version.version, len(distinct), metrics["examples"], figures,
            len(artifact) / 1e6, pruned,
        )  # fmt: skip
        return RankerReport(version, pruned, metrics, f"published: {figures}")
    finally:
        catalog.close()
        models.close()


@dataclass
class Skipped:
    """The copies of re-sent events left out of the events trained on."""

    duplicates: int = 0

    def count(self, events: Iterable[tuple[Event, int]], since: float | None) -> Iterator[Event]:
        """The events at or after ``since``, counting their extra copies on the way."""
        for event, copies in events:
            if since is None or event.timestamp >= since:
                self.duplicates += copies - 1
                yield event


def open_models(settings: TrainSettings) -> ModelStore:
    """Where versions are published: embedded mode's ``models.db`` when ``data_dir`` is set
    (its event log must exist), else PostgreSQL's model table."""
    if settings.data_dir is not None:
        from reco.adapters.sqlite_models import SqliteModelStore

        return SqliteModelStore(_data_dir(settings) / "models.db")
    return open_model_store(settings.database_url.get_secret_value())


def archived(settings: TrainSettings) -> Iterator[tuple[Event, int]]:
    """Each archived event once, with how many copies of it were archived, in time order:
    embedded mode's event log, else the PostgreSQL archive (opened when first read, closed
    at the end or when the iterator is closed)."""
    if settings.data_dir is not None:
        from reco.adapters.sqlite_log import SqliteEventLog

        log_ = SqliteEventLog(_data_dir(settings) / "events.db")
        # The log holds the api's impression records too: what users did is the rest.
        yield from (
            (e, copies) for _, e, copies in log_.iter_distinct_events() if e.type != IMPRESSION_TYPE
        )
        return
    archive = open_archive(settings.database_url.get_secret_value())
    try:
        yield from ((e, copies) for _, e, copies in archive.iter_distinct_events())
    finally:
        archive.close()


def distinct_events(settings: TrainSettings, skipped: Skipped | None = None) -> Iterator[Event]:
    """``archived``'s events of the last ``since_days`` (all when unset), each once."""
    since = time.time() - settings.since_days * 86400 if settings.since_days else None
    return (skipped or Skipped()).count(archived(settings), since)


def _data_dir(settings: TrainSettings) -> Path:
    data = Path(settings.data_dir or ".")
    if not (data / "events.db").exists():
        raise NothingToTrain(f"no event log in {data}: run `reco dev --data-dir {data}` first")
    return data


def _open(settings: TrainSettings) -> tuple[Iterator[tuple[Event, int]], Catalog, ModelStore]:
    models = open_models(settings)
    return archived(settings), _open_catalog(settings), models


def _open_catalog(settings: TrainSettings) -> Catalog:
    """Embedded mode's ``catalog.db`` when ``data_dir`` is set, else PostgreSQL's catalog."""
    if settings.data_dir is not None:
        from reco.adapters.sqlite_catalog import SqliteCatalog

        return SqliteCatalog(Path(settings.data_dir) / "catalog.db")
    return open_catalog(settings.database_url.get_secret_value())
