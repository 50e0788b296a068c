"""The engine under test, wired as in embedded mode but in process and without threads.

Events take the production path after ingest's validation (done at load, see ``data``):
``Event.to_json`` → an event log → ``Processor`` batches → a ``MemoryFeatureStore``; a
recommendation is ``Recommender.recommend`` with every exclusion rule off, because the
protocol's candidates include the items already in the session (EVALUATION.md §4).

The log is an in-memory list behind the ``EventConsumer`` port: the SQLite log would add
disk writes to every replayed event and time nothing the evaluation is about. The catalog is
empty: no business rule is applied, and categories come from the events' properties, which
the processor prefers to the catalog anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from reco.adapters.memory_features import MemoryFeatureStore
from reco.api.models import ModelHolder, RankerHolder
from reco.api.service import Recommender
from reco.catalog import Item, ItemIn
from reco.embeddings import EmbeddingModel
from reco.embeddings.training import TrainParams, corpus
from reco.embeddings.training import train as train_embeddings
from reco.evaluation.frozen import FrozenFeatures
from reco.evaluation.metrics import Ranking, Rest
from reco.events import Event
from reco.metrics import EmbeddedMetrics
from reco.ports import Catalog, FeatureStore, Record
from reco.processor import Processor
from reco.ranking.model import RankerModel
from reco.ranking.training import (
    RankerParams,
    TooFewExamples,
    beats_weighted_sum,
    replay_examples,
)
from reco.ranking.training import fit as fit_ranker
from reco.rules import RuleOptions
from reco.scoring import Ranked
from reco.settings import EngineSettings

GROUP = "reco-eval"
EVAL_OPTIONS = RuleOptions(exclude_seen=False, exclude_purchased=False, in_stock_only=False)


class MemoryLog:
    """An append-only, single-partition event log in a list; one consumer reads it."""

    def __init__(self) -> None:
        self._records: list[Record] = []
        self._position = 0
        self._committed = 0
        self.dead: list[tuple[int, str]] = []

    def append(self, events: Iterable[Event]) -> None:
        for event in events:
            self._records.append(Record(0, len(self._records), event.user_id, event.to_json()))

    # -- EventConsumer ------------------------------------------------------------------
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        batch = self._records[self._position : self._position + max_records]
        self._position += len(batch)
        return batch

    def seek(self, offsets: Mapping[int, int]) -> None:
        self._position = offsets.get(0, 0)

    def commit(self, offsets: Mapping[int, int]) -> None:
        self._committed = offsets.get(0, self._committed)

    def assignments(self) -> int:
        return 1

    def lag(self) -> dict[int, int]:
        return {0: len(self._records) - self._committed}

    def dead_letter(self, record: Record, reason: str) -> None:
        self.dead.append((record.offset, reason))

    def close(self) -> None:
        return None


class NullCatalog:
    """A catalog that knows no item: every item counts as in stock and uncategorised."""

    def upsert(self, items: Sequence[ItemIn]) -> list[Item]:
        raise NotImplementedError("the evaluation catalog is read-only and empty")

    def get(self, item_id: str) -> Item | None:
        return None

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        return {}

    def count(self) -> int:
        return 0

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None


class EventCatalog(NullCatalog):
    """What events tell of their items, learned as they arrive: the category and price their
    properties carry (as a shop's clients may send them; Taobao's and REES46's events do).
    The evaluation's stand-in for a shop's catalog, read by the ranker's catalog features;
    the rules of the evaluation read none of it."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}

    def learn(self, events: Iterable[Event]) -> None:
        items = self._items
        for event in events:
            if event.item_id in items:
                continue
            props = event.properties
            category, price = props.get("category"), props.get("price")
            if category is None and price is None:
                continue
            items[event.item_id] = Item(
                event.item_id,
                category=str(category) if category not in (None, "") else None,
                price=float(price) if isinstance(price, int | float) else None,
            )

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        items = self._items
        return {i: items[i] for i in item_ids if i in items}

    def count(self) -> int:
        return len(self._items)


class EngineSystem:
    """The engine as a ``System``: training is the processor draining ``T`` from the log.

    Static mode replays through a second processor over ``FrozenFeatures`` (see there why);
    online mode appends each replayed event to the training log, so the same processor and
    store learn from it exactly as in production.
    """

    name = "engine"

    def __init__(
        self,
        settings: EngineSettings,
        *,
        batch_size: int = 2000,
        embeddings: TrainParams | None = None,
        ranker: RankerParams | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        """``catalog``: the items' entries the ranker's catalog features read (a shop's
        catalog); without it, what the events' properties say of their items."""
        # A cached response would hide the cost of a recommendation and nothing else: every
        # event changes the session's version, so the cache would never hit anyway.
        self._settings = settings.model_copy(update={"cache_ttl_s": 0.0})
        self._batch = batch_size
        self._catalog: Catalog = catalog if catalog is not None else EventCatalog()
        self.now = 0.0
        """The time of a request: the latest event's (online), the training's end (static:
        the frozen model's time)."""
        self._online = True
        self._metrics = EmbeddedMetrics()
        self.store = self._new_store()
        self._log = MemoryLog()
        self._processor = self._new_processor(self._log, self.store)
        self._frozen: FrozenFeatures | None = None
        self._embeddings = embeddings
        self._models = ModelHolder(None, self._metrics)
        self._ranker = ranker
        self._rankers = RankerHolder(None, self._metrics)
        self.ranker_metrics: dict[str, Any] = {}
        """What training the ranker showed (``reco.ranking.training.fit``), once fitted."""
        if ranker is not None:
            self.name = "engine+ranker"
        self._recommender = self._new_recommender(self.store)

    def _new_recommender(self, store: FeatureStore) -> Recommender:
        return Recommender(
            store, self._catalog, self._settings, self._metrics, self._models,
            ranker=self._rankers, clock=lambda: self.now,
        )  # fmt: skip

    def _new_store(self) -> MemoryFeatureStore:
        s = self._settings
        return MemoryFeatureStore(
            max_related_per_item=s.max_related_per_item,
            max_popular=s.max_popular,
            max_sessions=s.max_sessions,
            dedupe_window=s.dedupe_window,
            neighbour_sessions_per_item=s.neighbour_sessions_per_item,
        )

    def _new_processor(self, log: MemoryLog, store: FeatureStore) -> Processor:
        processor = Processor(log, store, self._catalog, self._settings, self._metrics, group=GROUP)
        processor.resume()
        return processor

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        """The processor drains ``train``; with ``embeddings``, item vectors are trained on
        the same events, as ``reco train`` would from the archive. The vectors are not
        retrained during an online replay (production retrains on a schedule)."""
        if isinstance(self._catalog, EventCatalog):
            self._catalog.learn(train)
        self.now = max((e.timestamp for e in train), default=self.now)
        self._online = online
        self._log.append(train)
        while self._processor.run_once(self._batch, 0).records:
            pass
        self.store.popular(1)  # ranked before the first request, as the embedded app does
        if self._embeddings is not None:
            s = self._settings
            data = corpus(train, s.event_weights, s.session_gap_s)
            self._models.current = train_embeddings(data, self._embeddings)
        if self._ranker is not None:
            # Examples from a replay of the same events (vectors trained as it goes).
            examples = replay_examples(
                train,
                self._settings,
                candidates=self._ranker.candidates,
                embeddings=self._embeddings,
                warmup=self._ranker.warmup,
                max_requests=self._ranker.max_requests,
                unit=self._ranker.unit,
                exclude_seen=self._ranker.exclude_seen,
                target=self._ranker.target,
                catalog_features=self._ranker.catalog,
            )
            try:
                model, self.ranker_metrics = fit_ranker(examples, self._ranker)
            except TooFewExamples as exc:
                # reco train --ranker would refuse; the api would keep the weighted sum.
                self.ranker_metrics = {"served": False, "not_trained": str(exc)}
                self._rankers.current = None
            else:
                # As reco train --ranker publishes it: only when it beats the weighted sum
                # on its validation requests; otherwise the api keeps the weighted sum.
                self.ranker_metrics["served"] = beats_weighted_sum(self.ranker_metrics)
                self._rankers.current = model if self.ranker_metrics["served"] else None
        if not online:
            self._frozen = FrozenFeatures(self.store)
            self._log = MemoryLog()
            self._processor = self._new_processor(self._log, self._frozen)
            self._recommender = self._new_recommender(self._frozen)

    def observe(self, event: Event) -> None:
        """One record, one processor batch: the event is applied before the next request."""
        if isinstance(self._catalog, EventCatalog):
            self._catalog.learn((event,))
        if self._online:
            self.now = max(self.now, event.timestamp)
        self._log.append([event])
        self._processor.run_once(1, 0)

    def rank(
        self, *, session_id: str | None, user_id: str | None, n: int, exclude: frozenset[str]
    ) -> Ranking:
        # The protocol's non-candidates go to the api's own exclusion rule, as a page leaves
        # out what it already shows: asking for n + |exclude| items instead would build and
        # explain hundreds of items per request for MovieLens users.
        response = self._recommender.recommend(
            user_id=None if session_id is not None else user_id,
            session_id=session_id,
            count=n,
            options=replace(EVAL_OPTIONS, exclude=exclude),
        )
        items = tuple(r.item_id for r in response.items)
        scores = tuple(r.score for r in response.items)
        return Ranking(items, scores, _rest(scores, n))

    def end_session(self, session_id: str) -> None:
        if self._frozen is not None:
            self._frozen.forget()

    @property
    def ranker(self) -> RankerModel | None:
        """The ranker trained in ``fit`` (None: the weighted sum orders)."""
        return self._rankers.current

    @ranker.setter
    def ranker(self, model: RankerModel | None) -> None:
        self._rankers.current = model

    def details(self) -> dict[str, Any]:
        """The ranker's training figures (``reco eval --json`` reports them), if any."""
        return {"ranker": self.ranker_metrics} if self._ranker is not None else {}

    def catalog_entries(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """The catalog's entries of ``item_ids``, as the api reads them for the ranker."""
        return self._recommender.catalog_entries(item_ids)

    def candidates(
        self, *, session_id: str | None = None, user_id: str | None = None
    ) -> tuple[list[str], Ranked]:
        """The session's (or the user's) context and candidates as the api would score
        them now."""
        return self._recommender.candidates(
            user_id=None if session_id is not None else user_id, session_id=session_id
        )

    @property
    def model(self) -> EmbeddingModel | None:
        """The item vectors trained in ``fit`` (None: none trained)."""
        return self._models.current

    @model.setter
    def model(self, vectors: EmbeddingModel | None) -> None:
        self._models.current = vectors

    def snapshot(self) -> dict[str, Any]:
        """The trained features (the frozen model in static mode, the live one online)."""
        return self.store.snapshot()


def _rest(scores: tuple[float, ...], asked: int) -> Rest:
    """What the engine's answer says about the items it left out.

    An item with no signal scores 0 and the engine pads with such items only once every
    scored candidate is listed; a shorter answer than asked lists every scored candidate.
    """
    if scores and scores[-1] == 0.0:
        return Rest.TIED
    if len(scores) < asked:
        return Rest.BELOW
    return Rest.TRUNCATED
