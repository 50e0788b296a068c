"""Learn item vectors from events: item2vec (gensim) or implicit ALS (``implicit``).

- **item2vec** (Barkan & Koenigstein, 2016): word2vec's skip-gram with negative sampling,
  where a sentence is one session's items in order. Items that appear in the same sessions,
  near each other, get close vectors.
- **ALS** (Hu, Koren & Volinsky, 2008): a factorisation of the user-item matrix whose
  entries are confidences (the sum of the user's event weights on the item).

Both run single-threaded with a fixed seed, so a training run is reproducible. ALS is the
default: it beat item2vec on the inner splits of Diginetica and MovieLens, at every weight
of the embedding term (``docs/evaluation.md``, ``tools/embedding_study.py``).
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from reco.embeddings.model import EmbeddingModel, Vectors, normalise
from reco.events import Event

log = logging.getLogger(__name__)
# gensim logs every epoch at INFO; the job's own summary line says what matters.
logging.getLogger("gensim").setLevel(logging.WARNING)

Algorithm = Literal["item2vec", "als"]
ALGORITHMS: tuple[Algorithm, ...] = ("item2vec", "als")


@dataclass(frozen=True)
class TrainParams:
    algorithm: Algorithm = "als"
    dim: int = 64
    epochs: int = 20
    window: int = 5
    """item2vec: items on each side of a session item that count as its context."""
    negative: int = 5
    min_count: int = 1
    """Items with fewer events are left out (they get their category's centroid)."""
    regularization: float = 0.05
    """ALS only."""
    session_gap_s: float = 1800.0
    seed: int = 7

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TrainingDependencyMissing(RuntimeError):
    """The optional training libraries are not installed."""


@dataclass
class Corpus:
    """What training reads from the events, in one pass."""

    sessions: list[list[str]]
    user_items: dict[str, dict[str, float]]
    categories: dict[str, str]
    events: int


def corpus(events: Iterable[Event], event_weights: Mapping[str, float], gap_s: float) -> Corpus:
    """Sessions (items in time order, repeats in a row collapsed), per-user confidences and
    the category each item was last seen with. Events must come in time order, as the
    archive and the event log give them; types without a weight are skipped."""
    open_sessions: dict[str, tuple[str | None, float, list[str]]] = {}
    sessions: list[list[str]] = []
    user_items: defaultdict[str, dict[str, float]] = defaultdict(dict)
    categories: dict[str, str] = {}
    count = 0
    for event in events:
        weight = event_weights.get(event.type)
        if weight is None:
            continue
        count += 1
        items = user_items[event.user_id]
        items[event.item_id] = items.get(event.item_id, 0.0) + weight
        category = event.properties.get("category")
        if isinstance(category, str) and category:
            categories[event.item_id] = category
        current = open_sessions.get(event.user_id)
        if (
            current is None
            or current[0] != event.session_id
            or event.timestamp - current[1] > gap_s
        ):
            if current is not None:
                sessions.append(current[2])
            current = (event.session_id, event.timestamp, [])
        session = current[2]
        if not session or session[-1] != event.item_id:
            session.append(event.item_id)
        open_sessions[event.user_id] = (current[0], event.timestamp, session)
    sessions.extend(s for _, _, s in open_sessions.values())
    return Corpus([s for s in sessions if s], dict(user_items), categories, count)


def train(
    data: Corpus, params: TrainParams, categories: Mapping[str, str] | None = None
) -> EmbeddingModel:
    """Vectors for the corpus's items and centroids for their categories.

    ``categories`` (from the catalog) fills in items whose events carried none."""
    if params.algorithm == "item2vec":
        ids, vectors = _item2vec(data.sessions, params)
    elif params.algorithm == "als":
        ids, vectors = _als(data.user_items, params)
    else:
        raise ValueError(f"unknown algorithm {params.algorithm!r}; known: {ALGORITHMS}")
    model = EmbeddingModel(item_ids=ids, vectors=vectors)
    known = dict(categories or {}) | data.categories
    model.centroids = centroids(model, known)
    return model


def centroids(model: EmbeddingModel, categories: Mapping[str, str]) -> dict[str, Vectors]:
    rows: defaultdict[str, list[int]] = defaultdict(list)
    for row, item in enumerate(model.item_ids):
        category = categories.get(item)
        if category:
            rows[category].append(row)
    return {c: normalise(model.vectors[r].mean(axis=0)) for c, r in rows.items()}


def _stable_hash(text: str) -> int:
    """gensim seeds each vector with a hash of the item; Python's ``hash`` of a string
    changes from process to process, which would make two training runs differ."""
    return zlib.crc32(text.encode())


def _item2vec(sessions: list[list[str]], params: TrainParams) -> tuple[list[str], Vectors]:
    try:
        from gensim.models import Word2Vec
    except ImportError as exc:
        raise TrainingDependencyMissing(_INSTALL) from exc
    sentences = [s for s in sessions if len(s) > 1]
    if not sentences:
        return [], np.zeros((0, params.dim), dtype=np.float32)
    w2v = Word2Vec(
        sentences=sentences,
        vector_size=params.dim,
        window=params.window,
        min_count=params.min_count,
        sg=1,
        negative=params.negative,
        epochs=params.epochs,
        workers=1,
        seed=params.seed,
        hashfxn=_stable_hash,
        sample=0,
    )
    ids = [str(w) for w in w2v.wv.index_to_key]
    return ids, np.asarray(w2v.wv.vectors, dtype=np.float32)


def _als(
    user_items: Mapping[str, Mapping[str, float]], params: TrainParams
) -> tuple[list[str], Vectors]:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from scipy.sparse import csr_matrix
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        raise TrainingDependencyMissing(_INSTALL) from exc
    counts: defaultdict[str, int] = defaultdict(int)
    for items in user_items.values():
        for item in items:
            counts[item] += 1
    ids = sorted(i for i, c in counts.items() if c >= params.min_count)
    if not ids:
        return [], np.zeros((0, params.dim), dtype=np.float32)
    column = {item: col for col, item in enumerate(ids)}
    rows, cols, values = [], [], []
    for row, items in enumerate(user_items.values()):
        for item, confidence in items.items():
            if item in column:
                rows.append(row)
                cols.append(column[item])
                values.append(confidence)
    matrix = csr_matrix(
        (np.array(values, dtype=np.float32), (rows, cols)), shape=(len(user_items), len(ids))
    )
    # implicit parallelises itself; BLAS threads on top of it only contend (and implicit
    # warns about them when the model is created).
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(
            factors=params.dim,
            regularization=params.regularization,
            iterations=params.epochs,
            random_state=params.seed,
            num_threads=1,
        )
        als.fit(matrix, show_progress=False)
    return ids, np.asarray(als.item_factors, dtype=np.float32)


_INSTALL = (
    "training needs the optional libraries: pip install 'reco-engine[train]' "
    "(gensim for item2vec, implicit for ALS)"
)
