"""Features of each candidate of a request, from what the hybrid score already computed.

One function builds them, for training (``reco.ranking.training`` replays the log through
the engine and calls it at each event) and for serving (``RankerModel.rerank`` calls it in
the request), so the two can never differ. Everything comes from the request's own ranking
(``Ranked``: each signal's raw values, the weighted sum) and its context (the session's or
user's recent items, most recent first): no extra read of the store.

Not here yet: catalog features (category match with the last items, price relative to the
session's, item age) and popularity's trend; they need the catalog in the request path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from reco.scoring import SIGNALS, Ranked

FEATURES: tuple[str, ...] = (
    *(name for signal in SIGNALS for name in (signal, f"{signal}_rank")),
    "signals",
    "score",
    "score_rank",
    "context_len",
    "seen",
    "seen_recency",
)
"""Per signal: its value divided by its maximum over the candidates (0: not proposed) and
1 / its rank by that signal; how many signals proposed the item; the weighted sum divided
by the best one and 1 / its rank; how many items the context holds; whether the item is in
it and 1 / (1 + its position there, 0 the most recent)."""

Matrix = npt.NDArray[np.float32]


def candidate_features(
    ranked: Ranked, context: Sequence[str], candidates: int
) -> tuple[list[str], Matrix]:
    """The first ``candidates`` items of ``ranked`` and their features (one row each, in
    ``FEATURES``' order)."""
    items = ranked.order[:candidates]
    out = np.zeros((len(items), len(FEATURES)), dtype=np.float32)
    if not items:
        return items, out
    col = 0
    for signal in SIGNALS:
        table = ranked.raw.get(signal)
        if table:
            top = max(table.values())
            by_value = sorted(table, key=table.__getitem__, reverse=True)
            rank = {item: n for n, item in enumerate(by_value, 1)}
            for row, item in enumerate(items):
                value = table.get(item)
                if value is not None and top > 0:
                    out[row, col] = value / top
                    out[row, col + 1] = 1.0 / rank[item]
        col += 2
    out[:, col] = np.count_nonzero(out[:, 0 : 2 * len(SIGNALS) : 2], axis=1)
    totals = ranked.totals
    scores = np.fromiter((totals[item] for item in items), dtype=np.float32, count=len(items))
    best = float(scores[0])
    out[:, col + 1] = scores / best if best > 0 else 0.0
    out[:, col + 2] = 1.0 / np.arange(1, len(items) + 1, dtype=np.float32)
    out[:, col + 3] = len(context)
    position: dict[str, int] = {}
    for n, item in enumerate(context):
        position.setdefault(item, n)
    for row, item in enumerate(items):
        at = position.get(item)
        if at is not None:
            out[row, col + 4] = 1.0
            out[row, col + 5] = 1.0 / (1 + at)
    return items, out
