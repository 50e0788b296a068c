"""Features of each candidate of a request, from what the hybrid score already computed.

One function builds them, for training (``reco.ranking.training`` replays the log through
the engine and calls it at each event) and for serving (``RankerModel.rerank`` calls it in
the request), so the two can never differ. Everything comes from the request's own ranking
(``Ranked``: each signal's raw values, the weighted sum), its context (the session's or
user's recent items, most recent first), the recent weights read with it (``Ranked.recent``,
``reco.signals.trend``) and the catalog's entries of the candidates and the context
(category, price, when the item was created): no extra read of the store. Unknown values
are NaN, which LightGBM treats as missing.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import chain, compress, repeat

import numpy as np
import numpy.typing as npt

from reco.catalog import Item
from reco.scoring import SIGNALS, Ranked

NAN = float("nan")
COMPARED = 5
"""Most recent context items the candidate's category and price are compared with."""

FEATURES: tuple[str, ...] = (
    *(name for signal in SIGNALS for name in (signal, f"{signal}_rank")),
    "signals",
    "score",
    "score_rank",
    "recent",
    "trend",
    "context_len",
    "seen",
    "seen_recency",
    "category_match",
    "price_ratio",
    "age_days",
)
"""Per signal: its value divided by its maximum over the candidates (0: not proposed) and
1 / its rank by that signal (1 + how many items it proposed score higher); how many
signals proposed the item; the weighted sum divided by the best one and 1 / its rank; its
weight in the last ``trend_window_s`` divided by the window's strongest (0: not among the
strongest read), and its trend: its share of that window's weight over its share of
popularity (above 1: rising; NaN when its popularity or the window is unknown); how many
items the context holds; whether the item is in it and 1 / (1 + its position there,
0 the most recent); the share of the context's ``COMPARED`` most recent items (of known
category) in the candidate's category; its price over their median price; days since the
catalog created it."""

Matrix = npt.NDArray[np.float32]


def catalog_ids(ranked: Ranked, context: Sequence[str], candidates: int) -> list[str]:
    """The items whose catalog entries ``candidate_features`` reads."""
    return [*ranked.order[:candidates], *context[:COMPARED]]


def candidate_features(
    ranked: Ranked,
    context: Sequence[str],
    candidates: int,
    catalog: Mapping[str, Item] | None = None,
    now: float | None = None,
) -> tuple[list[str], Matrix]:
    """The first ``candidates`` items of ``ranked`` and their features (one row each, in
    ``FEATURES``' order). ``catalog`` holds the entries of ``catalog_ids`` that exist;
    ``now`` is the request's time (item age).

    Every lookup table (each signal's values, the recent weights, popularity, the context,
    the catalog's entries) is walked once against the candidates' rows, and the columns are
    filled with NumPy: the tables hold fewer items than the candidates times the tables,
    and a request's cost is in those lookups (see docs/evaluation.md, serving cost)."""
    items = ranked.order[:candidates]
    n = len(items)
    out = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if not n:
        return items, out
    row_of = dict(zip(items, range(n), strict=True))
    col = 2 * len(SIGNALS)
    _signal_columns(out, row_of, ranked.raw)
    totals = ranked.totals
    scores = np.fromiter(map(totals.__getitem__, items), dtype=np.float32, count=n)
    best = float(scores[0])
    out[:, col + 1] = scores / best if best > 0 else 0.0
    out[:, col + 2] = 1.0 / np.arange(1, n + 1, dtype=np.float32)
    _trend_columns(out[:, col + 3 : col + 5], row_of, ranked)
    out[:, col + 5] = len(context)
    position: dict[str, int] = {}
    for at, item in enumerate(context):
        position.setdefault(item, at)
    if position:
        rows, seen = _rows(row_of, position)
        out[rows, col + 6] = 1.0
        out[rows, col + 7] = 1.0 / (1.0 + np.fromiter(position.values(), np.float64)[seen])
    _catalog_columns(out[:, col + 8 :], row_of, context, catalog or {}, now)
    return items, out


def _signal_columns(
    out: Matrix, row_of: dict[str, int], raw: Mapping[str, dict[str, float]]
) -> None:
    """Each signal's value over its maximum and 1 / its rank, and how many signals proposed
    the candidate, into ``out`` (``FEATURES``). The signals' tables are read as one array
    (each a segment of it), so that the NumPy calls do not multiply with the signals."""
    columns = [at for at, signal in enumerate(SIGNALS) if raw.get(signal)]
    if not columns:
        return
    tables = [raw[SIGNALS[at]] for at in columns]
    sizes = np.fromiter(map(len, tables), dtype=np.int64, count=len(tables))
    total = int(sizes.sum())
    values = np.fromiter(chain.from_iterable(t.values() for t in tables), np.float64, total)
    rows = np.fromiter(
        map(row_of.get, chain.from_iterable(tables), repeat(-1)), dtype=np.int64, count=total
    )
    ends = np.cumsum(sizes)
    segment = np.repeat(np.arange(len(tables)), sizes)
    tops = np.maximum.reduceat(values, ends - sizes)
    # Rank 1 + how many values of its signal are strictly higher (equal values share a
    # rank): in the order by signal then value, that is the signal's end less the end of
    # the item's run of equal values.
    order = np.lexsort((values, segment))
    ascending, of = values[order], segment[order]
    run_ends = np.ones(total, dtype=bool)
    run_ends[:-1] = (ascending[1:] != ascending[:-1]) | (of[1:] != of[:-1])
    last = np.flatnonzero(run_ends)
    run = np.cumsum(run_ends) - run_ends
    higher = np.empty(total, dtype=np.int64)
    higher[order] = ends[of] - 1 - last[run]
    # Only candidates, of signals whose strongest value is positive.
    keep = (rows >= 0) & (tops > 0)[segment]
    rows, segment = rows[keep], segment[keep]
    value = values[keep] / tops[segment]
    at = 2 * np.asarray(columns, dtype=np.int64)[segment]
    out[rows, at] = value
    out[rows, at + 1] = 1.0 / (1 + higher[keep])
    # How many signals proposed it (a value of 0 proposes nothing).
    out[:, 2 * len(SIGNALS)] = np.bincount(rows, weights=value != 0, minlength=len(out))


def _rows(
    row_of: dict[str, int], table: Mapping[str, object]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The candidates' rows of ``table``'s items that are candidates, and which of its
    items (in its order) those are."""
    rows = np.fromiter(map(row_of.get, table, repeat(-1)), dtype=np.int64, count=len(table))
    among = rows >= 0
    return rows[among], among


def _trend_columns(out: Matrix, row_of: dict[str, int], ranked: Ranked) -> None:
    """Recent weight and trend into ``out``'s two columns (``FEATURES``)."""
    recent = ranked.recent
    total = sum(recent.values())
    if total <= 0:
        out[:, 1] = np.nan
        return
    weights = np.zeros(len(out), dtype=np.float64)
    rows, among = _rows(row_of, recent)
    weights[rows] = np.fromiter(recent.values(), dtype=np.float64, count=len(recent))[among]
    out[:, 0] = weights / max(recent.values())
    # Shares of the heads read: the divisions by each list's head cancel out. Unknown
    # (NaN) where the item's popularity was not read.
    out[:, 1] = np.nan
    popularity = ranked.raw.get("popularity")
    if not popularity:
        return
    rows, among = _rows(row_of, popularity)
    pop = np.fromiter(popularity.values(), dtype=np.float64, count=len(popularity))[among]
    with np.errstate(divide="ignore", invalid="ignore"):
        trend = (weights[rows] / total) / (pop / sum(popularity.values()))
    trend[~np.isfinite(trend)] = NAN
    out[rows, 1] = trend


def _catalog_columns(
    out: Matrix,
    row_of: dict[str, int],
    context: Sequence[str],
    catalog: Mapping[str, Item],
    now: float | None,
) -> None:
    """Category match, price ratio and age into ``out``'s three columns (NaN: unknown)."""
    out[:] = np.nan
    if not catalog:
        return
    rows, among = _rows(row_of, catalog)
    entries = list(compress(catalog.values(), among))
    recent = [e for e in map(catalog.get, context[:COMPARED]) if e is not None]
    categories = Counter(e.category for e in recent if e.category)
    if categories:
        total = sum(categories.values())
        share: dict[str | None, float] = {c: k / total for c, k in categories.items()}
        share[None] = share[""] = NAN
        out[rows, 0] = np.fromiter(
            map(share.get, [e.category for e in entries], repeat(0.0)), np.float64, len(entries)
        )
    # List comprehensions into np.array: a NaN per unknown field (NumPy converts a None
    # several times slower than a float).
    prices = [e.price for e in recent if e.price is not None and e.price > 0]
    if prices:
        price = np.array([NAN if e.price is None else e.price for e in entries], np.float64)
        out[rows, 1] = price / statistics.median(prices)
    if now is not None:
        created = [NAN if e.created_at is None else e.created_at for e in entries]
        # NaN stays NaN through the maximum: an unknown age stays unknown.
        out[rows, 2] = np.maximum(now - np.array(created, np.float64), 0.0) / 86400.0
