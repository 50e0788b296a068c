"""Recommendations: read features (one store call), score, apply the rules, explain."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice

from reco.api.cache import ResponseCache
from reco.api.impressions import ImpressionLog
from reco.api.models import ModelHolder, RankerHolder, TunedSettingsHolder
from reco.api.schemas import RecommendationsOut, RecommendedItem
from reco.catalog import Item
from reco.embeddings import EmbeddingModel
from reco.experiments import (
    Assignment,
    ExperimentReport,
    Experiments,
    compare,
    impression,
    recommendation_id,
)
from reco.metrics import ApiMetrics
from reco.ports import Catalog, FeatureStore, RecoInputs
from reco.rules import RuleOptions, boost_new_items, select
from reco.scoring import Candidate, Ranked, Sourced, score, similar
from reco.settings import EngineSettings
from reco.signals.decay import ForwardDecay
from reco.signals.history import context_weights
from reco.signals.trend import bucket_of, sliding

# How many ranked candidates to look up in the catalog per item asked for: enough that the
# rules (stock, price, diversity) still leave a full page.
_CANDIDATES_PER_ITEM = 10


class Recommender:
    def __init__(
        self,
        store: FeatureStore,
        catalog: Catalog,
        settings: EngineSettings,
        metrics: ApiMetrics,
        models: ModelHolder | None = None,
        tuned: TunedSettingsHolder | None = None,
        ranker: RankerHolder | None = None,
        impressions: ImpressionLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``impressions`` receives a record of each recommendation served in one of the
        settings' experiments; without it, experiments assign variants but count nothing.
        ``clock``: the time of a request (a replay's is its events' time)."""
        self._clock = clock
        self._store = store
        self._catalog = catalog
        self._s = settings
        self._metrics = metrics
        self._models = models or ModelHolder(None, metrics)
        # The request-time settings (weights, caps) come from here: the configured ones, or
        # the newest reco tune result over them.
        self._tuned = tuned or TunedSettingsHolder(None, metrics, settings)
        self._ranker = ranker or RankerHolder(None, metrics)
        self._experiments = Experiments(settings.experiments)
        self._impressions = impressions
        self._variant_settings: dict[tuple[int, str, str], EngineSettings] = {}
        self._cache: ResponseCache[RecommendationsOut] = ResponseCache(
            settings.cache_size, settings.cache_ttl_s
        )

    def recommend(
        self,
        *,
        user_id: str | None,
        session_id: str | None,
        count: int,
        options: RuleOptions,
    ) -> RecommendationsOut:
        started = time.perf_counter()
        assignment = self._experiments.assign(user_id if user_id is not None else session_id or "")
        s, tuned = self._settings_for(assignment)
        model, ranker = self._models.current, self._ranker.current
        if assignment is not None and not assignment.variant.ranker:
            ranker = None
        now = self._clock()
        inputs = self._inputs(
            s, user_id, session_id, _pool(count), options.category, now if ranker else None
        )
        versions = (model.version if model else 0, tuned, ranker.version if ranker else 0)
        variant = assignment.variant.name if assignment else None
        key = ("reco", user_id, session_id, count, options, versions, variant)
        cached = self._cache.get(key, inputs.version)
        if cached is not None:
            self._metrics.cache_hits.inc()
            # Each response is its own recommendation: the same page served again is
            # another impression, under another id.
            fresh = recommendation_id(assignment)
            response = cached.model_copy(update={"recommendation_id": fresh})
            self._shown(response, assignment)
            self._observe("recommendations", started)
            return response
        self._metrics.cache_misses.inc()

        ranked = self._rank(s, inputs, model, now)
        if ranker is not None:
            ranked = ranker.rerank(ranked, inputs.context, self._catalog.get_many, now)
        personal = bool(inputs.context)
        if not personal:
            self._metrics.fallbacks.labels("cold").inc()
        chosen, items = self._apply_rules(
            ranked, count, options, seen=inputs.context, purchased=inputs.purchases
        )
        response = RecommendationsOut(
            user_id=user_id,
            session_id=session_id,
            category=options.category,
            items=self._explain(chosen, items, options.category),
            personalised=personal,
            recommendation_id=recommendation_id(assignment),
            experiment=assignment.experiment.name if assignment else None,
            variant=variant,
        )
        self._cache.put(key, inputs.version, response)
        self._shown(response, assignment)
        self._observe("recommendations", started)
        return response

    def experiment_report(self) -> list[ExperimentReport]:
        """The configured experiments' variants compared, from the store's counters; the
        event types in the order of their weight (views first, purchases last)."""
        return compare(self._store.experiment_counts(), self._s)

    def _settings_for(self, assignment: Assignment | None) -> tuple[EngineSettings, int]:
        """The request-time settings of a variant: the served ones (configured, with the
        newest reco tune result over them) with the variant's own over those."""
        s, tuned = self._tuned.settings(), self._tuned.version
        if assignment is None or not assignment.variant.settings.model_fields_set:
            return s, tuned
        key = (tuned, assignment.experiment.name, assignment.variant.name)
        found = self._variant_settings.get(key)
        if found is None:
            if len(self._variant_settings) > 64:  # versions gone by
                self._variant_settings.clear()
            found = self._variant_settings[key] = assignment.variant.settings.apply(s)
        return found, tuned

    def _shown(self, response: RecommendationsOut, assignment: Assignment | None) -> None:
        if assignment is None or self._impressions is None or response.recommendation_id is None:
            return
        self._impressions.record(
            impression(
                response.recommendation_id,
                assignment,
                user_id=response.user_id,
                session_id=response.session_id,
                items=[i.item_id for i in response.items],
                now=self._clock(),
            )
        )

    def candidates(
        self, *, user_id: str | None, session_id: str | None, count: int = 20
    ) -> tuple[list[str], Ranked]:
        """A request's context and its candidates by the weighted sum, before the ranker and
        the rules: what the ranker's training examples are built from, as it sees them."""
        s, now = self._tuned.settings(), self._clock()
        inputs = self._inputs(s, user_id, session_id, _pool(count), None, now)
        return inputs.context, self._rank(s, inputs, self._models.current, now)

    def catalog_entries(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """The catalog's entries of ``item_ids`` (the ranker's catalog features)."""
        return self._catalog.get_many(item_ids)

    def _inputs(
        self,
        s: EngineSettings,
        user_id: str | None,
        session_id: str | None,
        popular: int,
        category: str | None,
        now: float | None,
    ) -> RecoInputs:
        """``now``: read the recent weights of its window (the ranker's features)."""
        # The neighbour search is the costliest part of the read: skip it when unweighted.
        neighbours = s.weights.neighbours > 0
        return self._store.recommendation_inputs(
            user_id=user_id,
            session_id=session_id,
            context_items=s.context_items,
            related_per_item=s.related_per_item,
            popular=popular,
            category=category,
            neighbour_sample=s.neighbour_sample if neighbours else 0,
            neighbour_k=s.neighbour_k if neighbours else 0,
            recent_bucket=None if now is None else bucket_of(now, s.trend_window_s),
        )

    def _rank(
        self, s: EngineSettings, inputs: RecoInputs, model: EmbeddingModel | None, now: float
    ) -> Ranked:
        ranked = score(
            inputs,
            s.weights,
            history_decay=s.history_decay,
            context_items=s.context_items,
            extra={"neighbours": inputs.neighbours},
            sourced={"embedding": self._embedding(s, model, inputs.context)},
        )
        if inputs.recent or inputs.recent_before:
            ranked.recent = sliding(inputs.recent, inputs.recent_before, now, s.trend_window_s)
        return ranked

    @staticmethod
    def _embedding(s: EngineSettings, model: EmbeddingModel | None, context: list[str]) -> Sourced:
        """Items near the context's vectors, when a model is loaded and weighted."""
        if model is None or not context or s.weights.embedding <= 0:
            return []
        weighted = context_weights(context, s.history_decay)[: s.context_items]
        return model.for_context(weighted, s.embedding_candidates)

    def similar(self, item_id: str, count: int, options: RuleOptions) -> RecommendationsOut:
        started = time.perf_counter()
        s = self._tuned.settings()
        related = self._store.related(item_id, s.related_per_item)
        anchor = self._catalog.get(item_id)
        category = options.category or (anchor.category if anchor else None)
        popular = self._store.popular(_pool(count), category) or self._store.popular(_pool(count))
        model = self._models.current
        near = (
            model.similar(item_id, _pool(count), anchor.category if anchor else None)
            if model is not None
            else []
        )
        ranked = similar(related, popular, s.weights, item_id, near)
        chosen, items = self._apply_rules(
            ranked, count, options, seen=(), purchased=(), exclude={item_id}
        )
        response = RecommendationsOut(
            item_id=item_id,
            category=options.category,
            items=self._explain(chosen, items, category if not related.coview else None),
            personalised=bool(related.coview or related.sequence or near),
        )
        self._observe("similar", started)
        return response

    def popular(self, count: int, options: RuleOptions) -> RecommendationsOut:
        started = time.perf_counter()
        scored = self._store.popular(_pool(count), options.category)
        landmark = self._store.landmark()
        decay = ForwardDecay(self._s.popularity_half_life_s, landmark or 0.0)
        now = self._clock()
        ranked = [
            Candidate(item, decay.value_at(value, now), {"popularity": 1.0})
            for item, value in scored
        ]
        chosen, items = self._apply_rules(ranked, count, options, seen=(), purchased=())
        response = RecommendationsOut(
            category=options.category,
            items=self._explain(chosen, items, options.category),
            personalised=False,
        )
        self._observe("popular", started)
        return response

    def _apply_rules(
        self,
        ranked: Sequence[Candidate],
        count: int,
        options: RuleOptions,
        *,
        seen: Iterable[str],
        purchased: Iterable[str],
        exclude: frozenset[str] | set[str] = frozenset(),
    ) -> tuple[list[Candidate], dict[str, Item]]:
        exclude = exclude | options.exclude
        seen, purchased = set(seen), set(purchased)
        for size in self._head_sizes(count, options, len(seen), len(purchased)):
            kept = (
                ranked.without(exclude)
                if isinstance(ranked, Ranked)
                else (c for c in ranked if c.item_id not in exclude)
            )
            head = list(islice(kept, size))
            wanted = {c.item_id for c in head}
            wanted.update(src for c in head for src in c.sources.values())
            items = self._catalog.get_many(wanted)
            if self._s.new_item_boost > 0:
                head = boost_new_items(
                    head, items, self._clock(), self._s.new_item_boost, self._s.new_item_days
                )
            chosen = select(head, items, options, seen=seen, purchased=purchased, count=count)
            # select() takes candidates greedily in order, so a head that fills the page
            # gives the page the longer head would.
            if len(chosen) >= count or len(head) < size:
                break
        if len(chosen) < count:
            # Pad with popular items; one pass over both keeps the diversity rule whole.
            head += self._popular_fill(head, items, count, options, exclude)
            chosen = select(head, items, options, seen=seen, purchased=purchased, count=count)
        return chosen, items

    def _head_sizes(
        self, count: int, options: RuleOptions, seen: int, purchased: int
    ) -> tuple[int, ...]:
        """How many ranked candidates to read: first enough for the page and what the rules
        are sure to drop, then, if rules dropped more (a category, a price range), the long
        head. A freshness boost reorders the head, so it always reads the long one."""
        long = count * _CANDIDATES_PER_ITEM + 50
        if self._s.new_item_boost > 0:
            return (long,)
        short = 2 * count + 10
        short += seen if options.exclude_seen else 0
        short += purchased if options.exclude_purchased else 0
        return (short, long) if short < long else (long,)

    def _popular_fill(
        self,
        head: list[Candidate],
        items: dict[str, Item],
        count: int,
        options: RuleOptions,
        exclude: frozenset[str] | set[str],
    ) -> list[Candidate]:
        taken = {c.item_id for c in head} | exclude
        popular = self._store.popular(_pool(count) * 2, options.category)
        fill = [Candidate(i, 0.0) for i, _ in popular if i not in taken]
        items.update(self._catalog.get_many(c.item_id for c in fill if c.item_id not in items))
        if fill:
            self._metrics.fallbacks.labels("padding").inc()
        return fill

    def _explain(
        self, chosen: list[Candidate], items: Mapping[str, Item], category: str | None
    ) -> list[RecommendedItem]:
        out = []
        for cand in chosen:
            item = items.get(cand.item_id)
            out.append(
                RecommendedItem(
                    item_id=cand.item_id,
                    score=round(cand.score, 6),
                    reasons=[_reason(s, src, items, category) for s, src in cand.reasons()],
                    title=item.title if item else None,
                    category=item.category if item else None,
                    price=item.price if item else None,
                )
            )
        return out

    def _observe(self, endpoint: str, started: float) -> None:
        self._metrics.recommendation_latency.labels(endpoint).observe(time.perf_counter() - started)


def _pool(count: int) -> int:
    return max(50, count * 3)


def _label(item_id: str, items: Mapping[str, Item]) -> str:
    item = items.get(item_id)
    return f"{item.title} ({item_id})" if item and item.title else item_id


def _reason(
    signal: str, source: str | None, items: Mapping[str, Item], category: str | None
) -> str:
    if signal == "coview" and source:
        return f"viewed together with {_label(source, items)}"
    if signal == "sequence" and source:
        return f"often viewed next after {_label(source, items)}"
    if signal == "recency":
        return "you viewed this recently"
    if signal == "neighbours":
        return "viewed in sessions like yours"
    if signal == "embedding" and source:
        return f"similar to {_label(source, items)}"
    return f"popular in {category}" if category else "popular right now"
