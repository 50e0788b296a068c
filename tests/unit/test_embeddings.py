"""Item embeddings without servers: the model's artifact, its nearest-neighbour queries,
the centroid of a cold item, the training corpus, and item2vec's reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from reco.embeddings.model import EmbeddingModel
from reco.embeddings.training import TrainParams, corpus, train
from reco.events import Event
from reco.ports import Related
from reco.scoring import similar
from reco.settings import SignalWeights

pytestmark = pytest.mark.unit

WEIGHTS = {"view": 1.0, "cart": 5.0}


def _model() -> EmbeddingModel:
    vectors = np.array(
        [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1]], dtype=np.float32
    )
    return EmbeddingModel(
        item_ids=["a1", "a2", "b1", "b2", "c1"],
        vectors=vectors,
        centroids={"A": np.array([1, 0, 0], dtype=np.float32)},
        version=4,
    )


def _event(user: str, item: str, ts: float, type_: str = "view", **kw: object) -> Event:
    return Event(f"{user}-{item}-{ts}", user, item, type_, ts, ts, **kw)  # type: ignore[arg-type]


def test_nearest_leaves_out_and_ranks_by_cosine() -> None:
    model = _model()
    assert model.similar("a1", 1)[0][0] == "a2"
    found = model.similar("b1", 1)
    assert found[0][0] == "b2"
    assert 0.98 < found[0][1] <= 1.0, "the score is the cosine similarity"
    assert "b1" not in dict(model.similar("b1", 4))


def test_for_context_names_the_nearest_context_item() -> None:
    model = _model()
    found = model.for_context([("a1", 1.0), ("b1", 0.9), ("unknown", 0.5)], 2)
    assert {item for item, _, _ in found} == {"a2", "b2"}, "context items are left out"
    sources = {item: source for item, _, source in found}
    assert sources == {"a2": "a1", "b2": "b1"}
    assert model.for_context([("unknown", 1.0)], 3) == []


def test_cold_item_uses_its_category_centroid() -> None:
    model = _model()
    assert model.similar("new", 2) == [], "no vector, no category: nothing to say"
    found = model.similar("new", 2, category="A")
    assert [i for i, _ in found] == ["a1", "a2"]


def test_artifact_round_trip() -> None:
    model = _model()
    loaded = EmbeddingModel.from_bytes(model.to_bytes(), version=9)
    assert loaded.version == 9
    assert loaded.item_ids == model.item_ids
    np.testing.assert_array_equal(loaded.vectors, model.vectors)
    np.testing.assert_array_equal(loaded.centroids["A"], model.centroids["A"])
    assert loaded.similar("b1", 3) == model.similar("b1", 3)
    with pytest.raises(ValueError, match="pickle"):
        EmbeddingModel.from_bytes(b"not a model")


def test_similar_ranks_a_cold_item_by_embedding_even_when_unweighted() -> None:
    weights = SignalWeights(embedding=0)
    ranked = similar(Related(), [("pop", 5.0)], weights, "new", [("a1", 0.9), ("a2", 0.8)])
    assert [c.item_id for c in ranked][:2] == ["a1", "a2"]
    assert ranked[0].reasons() == [("embedding", "new")]
    warm = similar(Related(coview=[("b1", 3.0)]), [], weights, "x", [("a1", 0.9)])
    assert [c.item_id for c in warm] == ["b1"], "an item with co-views keeps the weights"


def test_corpus_sessions_confidences_and_categories() -> None:
    events = [
        _event("u", "a", 0),
        _event("u", "a", 10),  # a repeat in a row is one step
        _event("u", "b", 20, "cart", properties={"category": "shoes"}),
        _event("v", "c", 25),
        _event("u", "c", 5000),  # after the 1800 s gap: a new session
        _event("u", "d", 5001, "fav"),  # a type without a weight is skipped
        _event("u", "e", 5002, session_id="tab"),  # another session id: a new session
    ]
    data = corpus(events, WEIGHTS, gap_s=1800)
    assert sorted(data.sessions) == sorted([["a", "b"], ["c"], ["c"], ["e"]])
    assert data.user_items["u"] == {"a": 2.0, "b": 5.0, "c": 1.0, "e": 1.0}
    assert data.categories == {"b": "shoes"}
    assert data.events == 6


def _sessions() -> list[Event]:
    """Two worlds that never meet: shoes and camping, 60 sessions each."""
    events = []
    for n in range(120):
        items = ["shoe", "laces", "socks"] if n % 2 else ["tent", "stove", "lamp"]
        events += [_event(f"u{n}", item, n * 10_000 + k) for k, item in enumerate(items)]
    return events


def test_item2vec_places_co_occurring_items_together_and_is_reproducible() -> None:
    data = corpus(_sessions(), WEIGHTS, gap_s=1800)
    params = TrainParams(dim=16, epochs=30)
    model = train(data, params)
    again = train(data, params)
    np.testing.assert_array_equal(model.vectors, again.vectors)
    assert {i for i, _ in model.similar("tent", 2)} == {"stove", "lamp"}
    assert {i for i, _ in model.similar("shoe", 2)} == {"laces", "socks"}


def test_als_places_co_occurring_items_together() -> None:
    data = corpus(_sessions(), WEIGHTS, gap_s=1800)
    model = train(data, TrainParams(algorithm="als", dim=8, epochs=15))
    assert {i for i, _ in model.similar("tent", 2)} == {"stove", "lamp"}
