"""A trained ranker as the api serves it: LightGBM's LambdaRank over ``FEATURES``.

The artifact is a JSON header line (the feature names, how many candidates to rerank) and
LightGBM's own text model. A model trained on other features than this engine computes is
refused at load (the api keeps the weighted sum), never served wrong.

A request scores its candidates with the model compiled to machine code by lleaves (LLVM),
which computes LightGBM's own scores ~20 times faster than LightGBM's predict at a few
hundred rows (docs/evaluation.md, serving cost); when lleaves cannot compile it, LightGBM's
predict serves the same scores.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from reco.catalog import Item
from reco.ranking.features import FEATURES, candidate_features, catalog_ids
from reco.scoring import Ranked

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]


class RankerDependencyMissing(ValueError):
    """LightGBM is not installed (the ``ranker`` extra)."""


def lightgbm_module() -> Any:
    try:
        import lightgbm
    except ImportError as exc:
        raise RankerDependencyMissing(
            "the ranker needs LightGBM: pip install 'reco-engine[ranker]'"
        ) from exc
    return lightgbm


def compiled(booster: Any) -> Predict | None:
    """``booster``'s predict compiled by lleaves (one thread), or None when lleaves is not
    installed or cannot compile it (LightGBM's predict then serves)."""
    try:
        import lleaves
    except ImportError:
        log.warning("lleaves is not installed: the ranker scores with LightGBM's predict")
        return None
    started = time.perf_counter()
    try:
        # lleaves reads the model from a file; /tmp is writable in the images.
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as text:
            text.write(booster.model_to_string())
            text.flush()
            model = lleaves.Model(model_file=text.name)
            model.compile()
    except Exception as exc:  # any failure leaves LightGBM's predict, which is correct
        log.warning("the ranker could not be compiled, LightGBM's predict scores: %r", exc)
        return None
    log.info(
        "ranker of %d trees compiled in %.2f s", model.num_trees(), time.perf_counter() - started
    )

    def predict(features: np.ndarray) -> np.ndarray:
        scores: np.ndarray = model.predict(features, n_jobs=1)
        return scores

    return predict


class RankerModel:
    def __init__(
        self,
        booster: Any,
        *,
        candidates: int,
        version: int = 0,
        catalog: bool = True,
        compile: bool = True,
    ) -> None:
        """``catalog``: whether the model was trained with the catalog features; without,
        their columns were unknown in training and stay so in serving (no catalog read).
        ``compile``: score with the compiled model (``compiled``); False: with LightGBM's
        predict."""
        self._booster = booster
        self.candidates = candidates
        self.version = version
        self.catalog = catalog
        self._predict = compiled(booster) if compile else None

    @property
    def is_compiled(self) -> bool:
        """Whether requests are scored by the compiled model."""
        return self._predict is not None

    def reranking(self, candidates: int) -> RankerModel:
        """The same model ordering ``candidates`` candidates per request."""
        model = RankerModel(
            self._booster,
            candidates=candidates,
            version=self.version,
            catalog=self.catalog,
            compile=False,
        )
        model._predict = self._predict
        return model

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The model's score of each row (higher: ranked higher)."""
        if self._predict is not None:
            return self._predict(features)
        scores: np.ndarray = self._booster.predict(features, num_threads=1)
        return scores

    def rerank(
        self,
        ranked: Ranked,
        context: Sequence[str],
        catalog: Callable[[list[str]], Mapping[str, Item]] | None = None,
        now: float | None = None,
    ) -> Ranked:
        """The first ``candidates`` of ``ranked`` in the model's order (ties: the weighted
        sum's), then the others in the weighted sum's order, for the rules to draw on.

        A page's scores stay positive and decreasing: the reranked ones score 1 plus how
        far the model's score lies above the lowest of them, the others their weighted sum
        scaled below 1. ``catalog`` looks up the catalog's entries of some items (a
        ``Catalog.get_many``); it is called only for a model trained with the catalog
        features. ``now``: see ``candidate_features``."""
        entries = None
        if self.catalog and catalog is not None:
            entries = catalog(catalog_ids(ranked, context, self.candidates))
        items, features = candidate_features(ranked, context, self.candidates, entries, now)
        if not items:
            return ranked
        scores = self.scores(features)
        # A stable sort on the negated score keeps the weighted sum's order among ties.
        order = np.argsort(-scores, kind="stable")
        head = scores[order] - scores[order[-1]] + 1.0
        rest = ranked.order[len(items) :]
        tail = np.fromiter(map(ranked.totals.__getitem__, rest), dtype=np.float64, count=len(rest))
        top = float(tail.max()) if len(rest) else 0.0
        tail = 0.999 * tail / top if top > 0 else np.zeros(len(rest))
        head_items = [items[i] for i in order]
        return ranked.reranked(head_items + rest, head.tolist() + tail.tolist())

    def to_bytes(self) -> bytes:
        header = {
            "features": list(FEATURES),
            "candidates": self.candidates,
            "catalog": self.catalog,
        }
        text: str = self._booster.model_to_string()
        return orjson.dumps(header) + b"\n" + text.encode()

    @classmethod
    def from_bytes(cls, data: bytes, version: int) -> RankerModel:
        head, _, body = data.partition(b"\n")
        try:
            header = orjson.loads(head)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a ranker artifact: {exc}") from exc
        if not isinstance(header, dict) or tuple(header.get("features", ())) != FEATURES:
            raise ValueError("the ranker was trained on other features than this engine's")
        lightgbm = lightgbm_module()
        try:
            booster = lightgbm.Booster(model_str=body.decode())
        except lightgbm.basic.LightGBMError as exc:
            raise ValueError(f"not a LightGBM model: {exc}") from exc
        return cls(
            booster,
            candidates=int(header["candidates"]),
            version=version,
            catalog=bool(header.get("catalog", True)),
        )
