"""The ModelStore contract, run against every adapter: versions only grow, the latest of a
kind is what the api loads, artifacts come back byte for byte, pruning keeps the newest."""

from __future__ import annotations

import os

import pytest

from reco.ports import ModelStore

pytestmark = pytest.mark.unit


def test_empty_store_has_no_latest(model_store: ModelStore) -> None:
    assert model_store.latest("embeddings") is None
    assert model_store.versions("embeddings") == []
    with pytest.raises(KeyError):
        model_store.artifact(1)


def test_publish_then_latest_and_artifact(model_store: ModelStore) -> None:
    blob = os.urandom(300_000) + b"\x00end"
    first = model_store.publish(
        "embeddings", blob, params={"dim": 8, "algorithm": "item2vec"}, metrics={"items": 3}
    )
    second = model_store.publish("embeddings", b"v2", params={}, metrics={})
    assert second.version > first.version
    assert first.params == {"dim": 8, "algorithm": "item2vec"}
    assert first.metrics == {"items": 3}
    assert first.size_bytes == len(blob)
    assert first.created_at > 0

    latest = model_store.latest("embeddings")
    assert latest is not None
    assert latest.version == second.version
    assert model_store.artifact(first.version) == blob, "the bytes come back unchanged"
    assert model_store.artifact(second.version) == b"v2"


def test_kinds_are_separate(model_store: ModelStore) -> None:
    model_store.publish("embeddings", b"e", params={}, metrics={})
    other = model_store.publish("other", b"o", params={}, metrics={})
    latest = model_store.latest("embeddings")
    assert latest is not None
    assert latest.version != other.version
    assert [v.kind for v in model_store.versions("other")] == ["other"]


def test_prune_keeps_the_newest(model_store: ModelStore) -> None:
    published = [
        model_store.publish("embeddings", bytes([n]), params={}, metrics={}) for n in range(5)
    ]
    kept_other = model_store.publish("other", b"x", params={}, metrics={})
    assert model_store.prune("embeddings", keep=2) == 3
    assert [v.version for v in model_store.versions("embeddings")] == [
        published[4].version,
        published[3].version,
    ]
    assert model_store.artifact(kept_other.version) == b"x", "other kinds are untouched"
    with pytest.raises(KeyError):
        model_store.artifact(published[0].version)
    assert model_store.prune("embeddings", keep=2) == 0
