"""The ranker's pieces: the features of each candidate (one function for training and
serving), the model's artifact, and the reranking the api applies (LightGBM, trained here
on examples whose best order is known)."""

from __future__ import annotations

import numpy as np
import pytest

from reco.catalog import Item
from reco.events import Event
from reco.ports import RecoInputs, Related
from reco.ranking.features import FEATURES, candidate_features, catalog_ids
from reco.ranking.model import RankerModel
from reco.ranking.training import (
    Examples,
    RankerParams,
    TooFewExamples,
    beats_weighted_sum,
    fit,
    replay_examples,
)
from reco.scoring import Ranked, score
from reco.settings import EngineSettings, SignalWeights
from tests.support.shops import ring_walks

pytestmark = pytest.mark.unit


def _ranked() -> tuple[list[str], Ranked]:
    inputs = RecoInputs(
        context=["b", "a"],  # b the most recent
        purchases=[],
        related={
            "b": Related(coview=[("x", 4.0), ("y", 2.0), ("a", 1.0)], sequence=[("y", 3.0)]),
            "a": Related(coview=[("x", 2.0)]),
        },
        popular=[("z", 10.0), ("x", 5.0)],
    )
    ranked = score(inputs, SignalWeights(recency=0.5), history_decay=0.5, context_items=10)
    return inputs.context, ranked


def column(name: str) -> int:
    return FEATURES.index(name)


def test_each_candidate_gets_its_signals_values_ranks_and_context() -> None:
    context, ranked = _ranked()
    items, features = candidate_features(ranked, context, candidates=50)

    assert items == ranked.order
    assert features.shape == (len(items), len(FEATURES))
    row = {item: features[i] for i, item in enumerate(items)}
    # co-view: b's list over its head (weight 1) plus a's (weight 0.5): x 1 + 0.5, y 0.5.
    assert row["x"][column("coview")] == pytest.approx(1.0)
    assert row["y"][column("coview")] == pytest.approx(0.5 / 1.5)
    assert row["x"][column("coview_rank")] == 1.0
    assert row["y"][column("coview_rank")] == pytest.approx(1 / 2)
    assert row["y"][column("sequence")] == 1.0
    assert row["x"][column("sequence")] == 0.0, "not proposed by the sequence signal"
    assert row["z"][column("popularity")] == 1.0
    assert row["x"][column("popularity")] == pytest.approx(0.5)
    assert row["x"][column("signals")] == 2, "co-view and popularity"
    assert row["z"][column("signals")] == 1
    assert row["a"][column("seen")] == 1.0
    assert row["a"][column("seen_recency")] == pytest.approx(1 / 2), "second most recent"
    assert row["x"][column("seen")] == 0.0
    assert all(r[column("context_len")] == 2 for r in features)
    assert features[0][column("score")] == 1.0
    assert features[0][column("score_rank")] == 1.0
    assert features[1][column("score_rank")] == pytest.approx(1 / 2)


def test_catalog_columns_compare_each_candidate_with_the_context() -> None:
    context, ranked = _ranked()
    day = 86400.0
    catalog = {
        "a": Item("a", category="shoes", price=100.0),
        "b": Item("b", category="shoes", price=50.0, created_at=0.0),
        "x": Item("x", category="shoes", price=150.0, created_at=10 * day),
        "y": Item("y", category="hats"),
        "z": Item("z", price=300.0),
    }
    assert set(catalog_ids(ranked, context, 50)) == {*ranked.order, *context}
    items, features = candidate_features(ranked, context, 50, catalog, now=12 * day)
    row = {item: features[i] for i, item in enumerate(items)}
    assert row["x"][column("category_match")] == 1.0, "both context items are shoes"
    assert row["y"][column("category_match")] == 0.0
    assert np.isnan(row["z"][column("category_match")]), "no category: unknown"
    assert row["x"][column("price_ratio")] == pytest.approx(150 / 75), "over the median 75"
    assert row["z"][column("price_ratio")] == pytest.approx(4.0)
    assert np.isnan(row["y"][column("price_ratio")])
    assert row["x"][column("age_days")] == pytest.approx(2.0)
    assert np.isnan(row["y"][column("age_days")])
    _, unknown = candidate_features(ranked, context, 50)
    assert np.isnan(unknown[:, column("category_match") :]).all(), "no catalog: all unknown"


def test_trend_compares_the_recent_window_with_popularity() -> None:
    """``recent``: the window's weight over its strongest; ``trend``: the share of the
    window over the share of popularity (x holds 1/3 of popularity and 3/4 of the window)."""
    context, ranked = _ranked()
    _, without = candidate_features(ranked, context, 50)
    assert (without[:, column("recent")] == 0).all()
    assert np.isnan(without[:, column("trend")]).all(), "no window read: unknown"

    ranked.recent = {"x": 3.0, "y": 1.0}
    items, features = candidate_features(ranked, context, 50)
    row = {item: features[i] for i, item in enumerate(items)}
    assert row["x"][column("recent")] == 1.0
    assert row["y"][column("recent")] == pytest.approx(1 / 3)
    assert row["z"][column("recent")] == 0.0
    assert row["x"][column("trend")] == pytest.approx((3 / 4) / (5 / 15)), "rising"
    assert row["z"][column("trend")] == 0.0, "popular, nothing lately"
    assert np.isnan(row["y"][column("trend")]), "its popularity is not among the read"
    reranked = ranked.reranked(ranked.order, [1.0] * len(ranked.order))
    assert reranked.recent == ranked.recent


def test_equal_values_share_a_rank_and_a_signal_with_no_positive_value_counts_nothing() -> None:
    raw = {
        "coview": {"a": 2.0, "b": 2.0, "c": 1.0, "d": 0.0, "far": 3.0},
        "embedding": {"a": -0.5, "b": -0.1},
    }
    order = ["a", "b", "c", "d"]
    ranked = Ranked(order, dict.fromkeys(order, 1.0), [], {}, raw)
    _, features = candidate_features(ranked, [], candidates=4)

    # "far" is not a candidate but outranks them all: a and b share rank 2, c is 4th.
    ranks = features[:, column("coview_rank")].tolist()
    assert ranks == pytest.approx([1 / 2, 1 / 2, 1 / 4, 1 / 5])
    assert features[:, column("coview")].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3, 0])
    assert not features[:, column("embedding")].any(), "its strongest value is not positive"
    assert not features[:, column("embedding_rank")].any()
    assert features[:, column("signals")].tolist() == [1, 1, 1, 0], "a value of 0 proposes nothing"


def test_only_the_first_candidates_are_featurised() -> None:
    context, ranked = _ranked()
    items, features = candidate_features(ranked, context, candidates=2)
    assert items == ranked.order[:2]
    assert features.shape == (2, len(FEATURES))


def _examples(groups: int, seed: int = 0) -> Examples:
    """Requests of 20 candidates in which the clicked one is the candidate seen most
    recently (``seen_recency`` highest), wherever the weighted sum put it."""
    rng = np.random.default_rng(seed)
    out = Examples()
    for _ in range(groups):
        features = rng.random((20, len(FEATURES))).astype(np.float32)
        labels = np.zeros(20, dtype=np.int32)
        labels[int(np.argmax(features[:, column("seen_recency")]))] = 1
        out.features.append(features)
        out.labels.append(labels)
    out.requests = groups
    return out


def test_the_model_learns_a_known_order_and_survives_its_artifact() -> None:
    model, metrics = fit(_examples(400), RankerParams(min_data_in_leaf=5))

    assert metrics["valid_ndcg20_ranker"] > metrics["valid_ndcg20_weighted_sum"] + 0.2
    assert metrics["importance"]["seen_recency"] == max(metrics["importance"].values())
    again = RankerModel.from_bytes(model.to_bytes(), version=3)
    assert again.version == 3
    assert again.candidates == model.candidates
    probe = _examples(5, seed=1).features
    for features in probe:
        assert np.array_equal(again.scores(features), model.scores(features))


def test_the_compiled_model_scores_as_lightgbm_does() -> None:
    """Requests are scored by the model compiled with lleaves; its scores are LightGBM's,
    unknown (NaN) values included, for a trained model and for one loaded from its
    artifact."""
    examples = _examples(400)
    rng = np.random.default_rng(2)
    for features in examples.features:
        features[rng.random(features.shape) < 0.2] = np.nan
    model, _ = fit(examples, RankerParams(min_data_in_leaf=5))
    again = RankerModel.from_bytes(model.to_bytes(), version=1)
    plain = RankerModel(model._booster, candidates=model.candidates, compile=False)

    assert model.is_compiled
    assert again.is_compiled
    assert not plain.is_compiled
    assert model.reranking(500)._predict is model._predict, "shared, not compiled again"
    probe = np.vstack(_examples(25, seed=3).features)
    probe[rng.random(probe.shape) < 0.3] = np.nan
    expected = plain.scores(probe)
    assert len(np.unique(expected)) > 10, "a model that tells the rows apart"
    np.testing.assert_allclose(model.scores(probe), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(again.scores(probe), expected, rtol=1e-12, atol=1e-12)


def test_a_model_lleaves_cannot_compile_is_scored_by_lightgbm(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure of lleaves (made here by a compile that raises, as lleaves 1.3 does over
    llvmlite 0.45) leaves LightGBM's predict, which gives the same scores."""
    import lleaves

    model, _ = fit(_examples(100), RankerParams(min_data_in_leaf=5))

    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise AttributeError("module 'llvmlite.binding' has no attribute 'PassManagerBuilder'")

    monkeypatch.setattr(lleaves.Model, "compile", broken)
    fallback = RankerModel.from_bytes(model.to_bytes(), version=1)

    assert not fallback.is_compiled
    assert "could not be compiled" in caplog.text
    probe = _examples(3, seed=1).features[0]
    np.testing.assert_allclose(fallback.scores(probe), model.scores(probe), rtol=1e-12)


def test_reranking_keeps_reasons_and_gives_decreasing_positive_scores() -> None:
    model, _ = fit(_examples(400), RankerParams(min_data_in_leaf=5))
    context, ranked = _ranked()

    reranked = model.rerank(ranked, context)

    scores = [c.score for c in reranked]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) > 0
    assert {c.item_id for c in reranked} == set(ranked.order)
    before = {c.item_id: c.reasons() for c in ranked}
    assert {c.item_id: c.reasons() for c in reranked} == before
    # The model learnt "the most recently seen first": b, the context's latest item.
    assert reranked[0].item_id == "b"
    assert ranked[0].item_id != "b", "the weighted sum put it elsewhere"


def test_an_artifact_of_other_features_is_refused() -> None:
    model, _ = fit(_examples(100), RankerParams(min_data_in_leaf=5))
    _, _, body = model.to_bytes().partition(b"\n")
    with pytest.raises(ValueError, match="other features"):
        RankerModel.from_bytes(b'{"features": ["coview"], "candidates": 5}\n' + body, 1)
    with pytest.raises(ValueError, match="not a ranker"):
        RankerModel.from_bytes(b"garbage", 1)


def test_too_few_examples_say_what_to_do() -> None:
    with pytest.raises(TooFewExamples, match="more sessions"):
        fit(_examples(10), RankerParams())


def test_the_candidates_after_the_reranked_ones_follow_in_the_weighted_order() -> None:
    model, _ = fit(_examples(400), RankerParams(min_data_in_leaf=5))
    context, ranked = _ranked()

    reranked = model.reranking(2).rerank(ranked, context)

    assert [c.item_id for c in reranked][2:] == ranked.order[2:]
    assert set(reranked.order[:2]) == set(ranked.order[:2])
    scores = [c.score for c in reranked]
    assert scores == sorted(scores, reverse=True)
    assert min(scores[:2]) >= 1.0 > max(scores[2:])


def _ring_events(sessions: int) -> list[Event]:
    rows = ring_walks(sessions, start=1_700_000_000.0, every_s=3600)
    return [
        Event(r["event_id"], r["user_id"], r["item_id"], r["type"], r["timestamp"],
              r["timestamp"], r["session_id"])
        for r in rows
    ]  # fmt: skip


def test_the_replay_records_after_the_warm_up_labelling_the_next_item() -> None:
    events = _ring_events(100)  # 5 views per session: 4 requests each
    examples = replay_examples(events, EngineSettings(), candidates=50, warmup=0.5)

    assert examples.requests == 4 * 50, "only the last half's requests"
    assert len(examples) > 0.9 * examples.requests, (
        "the next ring item is nearly always a candidate"
    )
    assert all(int(y.sum()) == 1 for y in examples.labels), "one item named per request"


def test_items_a_page_would_not_show_are_left_out_of_the_examples() -> None:
    events = _ring_events(100)
    kept = replay_examples(events, EngineSettings(), candidates=50, warmup=0.5)
    shown = replay_examples(events, EngineSettings(), candidates=50, warmup=0.5, exclude_seen=True)
    seen = FEATURES.index("seen")
    assert any(f[:, seen].any() for f in kept.features)
    assert not any(f[:, seen].any() for f in shown.features)
    assert shown.rows < kept.rows


def _walks_then_purchase_of_the_first(sessions: int) -> list[Event]:
    """Ring walks whose session ends with a purchase of the walk's first item: the
    weighted sum puts the most recent items first, the buyer goes back to the oldest."""
    events = _ring_events(sessions)
    by_session: dict[str, list[Event]] = {}
    for e in events:
        by_session.setdefault(str(e.session_id), []).append(e)
    out = list(events)
    for sid, walk in by_session.items():
        first, last = walk[0], walk[-1]
        at = last.timestamp + 60
        out.append(Event(f"buy-{sid}", first.user_id, first.item_id, "purchase", at, at, sid))
    return out


def test_the_purchase_target_learns_from_the_requests_before_purchases() -> None:
    events = _walks_then_purchase_of_the_first(600)
    settings = EngineSettings()
    params = RankerParams(candidates=50, target="purchase", min_data_in_leaf=5)
    examples = replay_examples(events, settings, candidates=50, warmup=0.3, target="purchase")
    assert examples.requests == 420, "one request per purchase after the warm-up"
    seen_recency = FEATURES.index("seen_recency")
    for features, labels in zip(examples.features, examples.labels, strict=True):
        (bought,) = np.flatnonzero(labels)
        assert features[bought, seen_recency] == pytest.approx(1 / 5), "the oldest of five"
    _, metrics = fit(examples, params)
    assert metrics["valid_ndcg20_ranker"] > 0.95
    assert metrics["valid_ndcg20_weighted_sum"] < 0.6
    assert beats_weighted_sum(metrics)
    nexts = replay_examples(events, settings, candidates=50, warmup=0.3)
    assert nexts.requests > 4 * examples.requests, "the next target records every event"


def test_the_purchase_target_without_purchases_says_what_to_do() -> None:
    examples = replay_examples(_ring_events(60), EngineSettings(), candidates=50, target="purchase")
    assert examples.requests == 0
    with pytest.raises(TooFewExamples, match="more purchases, or with the next target"):
        fit(examples, RankerParams(target="purchase"))


def test_an_evaluation_whose_ranker_cannot_be_trained_serves_the_weighted_sum() -> None:
    """``reco eval --ranker`` on a log with too few purchases for the purchase target:
    engine+ranker is the engine, and the report says why."""
    from reco.evaluation.engine import EngineSystem

    system = EngineSystem(EngineSettings(), ranker=RankerParams(target="purchase"))
    system.fit(_ring_events(60), online=True)
    assert system.ranker is None
    assert system.ranker_metrics["served"] is False
    assert "more purchases" in system.ranker_metrics["not_trained"]


def test_a_ranker_trained_without_the_catalog_reads_none_and_says_so() -> None:
    examples = _examples(200)
    model, _ = fit(examples, RankerParams(candidates=50, catalog=False))
    assert model.catalog is False
    restored = RankerModel.from_bytes(model.to_bytes(), version=3)
    assert restored.catalog is False
    assert restored.reranking(20).catalog is False
    context, ranked = _ranked()
    shoes = {i: Item(i, category="shoes") for i in ranked.order}
    # Given a catalog anyway, it leaves the columns as they were in training: unknown.
    given = restored.rerank(ranked, context, lambda ids: {i: shoes[i] for i in ids}, 0.0)
    assert given.order == restored.rerank(ranked, context).order
