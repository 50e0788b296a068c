"""A trained set of item vectors and its nearest-neighbour index, as the api serves it.

The vectors are unit length, so the inner product is the cosine similarity; the usearch
index (HNSW) answers "the items nearest to this vector" in well under a millisecond for a
catalogue of a million items, where a full scan would cost tens of milliseconds. Items that
never occurred in the training events have no vector of their own; the centroid of their
catalogue category stands in for them (a cold item's similar list is its category's
typical items rather than nothing).

The artifact is one ``.npz`` buffer (ids, vectors, centroids and the serialised index),
read with ``allow_pickle=False``: loading a model never executes code from the database.
"""

from __future__ import annotations

import ctypes
import importlib.util
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt


def _load_lightgbm_first() -> None:
    """Load LightGBM's library (the ``ranker`` extra), when installed, before usearch.

    usearch's module links its own libstdc++ statically and exports its GNU-unique symbols
    (``std::num_put``'s locale id among them), which bind process-wide for whatever loads
    later: a LightGBM loaded after it formats integers as "" and refuses its own feature
    names ("Feature (Column_) appears more than one time"; lightgbm 4.7.0, usearch 2.26.6).
    Loading the library alone costs ~4 ms (importing the package, ~230 ms).
    """
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or spec.origin is None:
        return
    library = Path(spec.origin).parent / "lib" / "lib_lightgbm.so"
    if library.exists():
        ctypes.CDLL(str(library))


_load_lightgbm_first()

from usearch.index import Index  # noqa: E402

from reco.ports import Scored  # noqa: E402

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


def normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (vectors / norms).astype(np.float32)
    return out


@dataclass
class EmbeddingModel:
    """Item vectors (unit length), their index, and per-category centroids."""

    item_ids: list[str]
    vectors: Vectors
    centroids: dict[str, Vectors] = field(default_factory=dict)
    version: int = 0
    index: Index | None = field(default=None, repr=False)
    """Built from the vectors when not given (seconds per 100k items; restoring a saved
    one takes milliseconds, so artifacts carry it)."""
    _rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.vectors):
            raise ValueError(f"{len(self.item_ids)} ids for {len(self.vectors)} vectors")
        self.vectors = normalise(np.asarray(self.vectors, dtype=np.float32))
        self._rows = {item: row for row, item in enumerate(self.item_ids)}
        if self.index is None or len(self.index) != len(self.item_ids):
            self.index = Index(ndim=max(1, self.dim), metric="ip", dtype="f32")
            if self.item_ids:
                # One thread: HNSW built by several threads links its graph in whatever
                # order they ran, so two builds of the same vectors answer (slightly)
                # differently; training is a batch job and its results must reproduce.
                keys = np.arange(len(self.item_ids), dtype=np.uint64)
                self.index.add(keys, self.vectors, threads=1)
        if self.item_ids:
            # One query through the index and the arrays: the first request after a model
            # is swapped in would otherwise pay their first-use costs (2 ms measured).
            self.for_context([(self.item_ids[0], 1.0)], 1)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def vector(self, item_id: str, category: str | None = None) -> Vectors | None:
        """The item's vector, else its category's centroid, else None."""
        row = self._rows.get(item_id)
        if row is not None:
            found: Vectors = self.vectors[row]
            return found
        if category is not None:
            return self.centroids.get(category)
        return None

    def nearest(self, query: Vectors, count: int, exclude: Iterable[str] = ()) -> Scored:
        """Items nearest to ``query`` by cosine, best first, leaving out ``exclude``."""
        if not self.item_ids or count <= 0 or self.index is None:
            return []
        skip = set(exclude)
        # The search's cost grows with k (measured: 0.27 ms for 10, 1.1 ms for 210 on 20k
        # items), so read only what the exclusions can take away.
        wanted = min(len(self.item_ids), count + len(skip))
        matches = self.index.search(query.astype(np.float32), wanted)
        ids = self.item_ids
        out: Scored = []
        for key, distance in zip(matches.keys.tolist(), matches.distances.tolist(), strict=True):
            item = ids[key]
            if item in skip:
                continue
            # usearch's "ip" distance is 1 - inner product.
            out.append((item, max(0.0, 1.0 - distance)))
            if len(out) == count:
                break
        return out

    def similar(self, item_id: str, count: int, category: str | None = None) -> Scored:
        query = self.vector(item_id, category)
        return [] if query is None else self.nearest(query, count, exclude=(item_id,))

    def for_context(
        self, context: Sequence[tuple[str, float]], count: int
    ) -> list[tuple[str, float, str]]:
        """Items near the weighted mean of the context's vectors: ``(item, score, source)``
        with ``source`` the context item the candidate is most similar to (the "because")."""
        known = [(item, w, self._rows[item]) for item, w in context if item in self._rows]
        if not known:
            return []
        rows = np.array([row for _, _, row in known])
        weights = np.array([w for _, w, _ in known], dtype=np.float32)
        query = normalise((weights[:, None] * self.vectors[rows]).sum(axis=0))
        found = self.nearest(query, count, exclude=(item for item, _, _ in known))
        if not found:
            return []
        candidates = self.vectors[[self._rows[item] for item, _ in found]]
        best = (candidates @ self.vectors[rows].T * weights).argmax(axis=1)
        return [
            (item, value, known[int(b)][0]) for (item, value), b in zip(found, best, strict=True)
        ]

    # -- artifact ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        names = sorted(self.centroids)
        centroids = (
            np.stack([self.centroids[n] for n in names])
            if names
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        np.savez(
            buffer,
            item_ids=np.array(self.item_ids, dtype=np.str_),
            vectors=self.vectors,
            centroid_names=np.array(names, dtype=np.str_),
            centroids=centroids.astype(np.float32),
            index=np.frombuffer(self._index_bytes(), dtype=np.uint8),
        )
        return buffer.getvalue()

    def _index_bytes(self) -> bytes:
        saved = self.index.save() if self.index is not None and self.item_ids else None
        return bytes(saved) if saved else b""

    @classmethod
    def from_bytes(cls, data: bytes, version: int = 0) -> EmbeddingModel:
        """Load an artifact written by ``to_bytes``. The saved index is restored; one that
        this usearch cannot read (another version) is rebuilt from the vectors instead."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = [str(n) for n in npz["centroid_names"]]
            return cls(
                item_ids=[str(i) for i in npz["item_ids"]],
                vectors=npz["vectors"],
                centroids=dict(zip(names, npz["centroids"], strict=True)),
                version=version,
                index=_restore(npz["index"].tobytes()),
            )


def _restore(saved: bytes) -> Index | None:
    if not saved:
        return None
    try:
        return Index.restore(bytearray(saved))
    except (RuntimeError, ValueError) as exc:
        log.warning("saved embedding index unreadable (%s); rebuilding it", exc)
        return None
