"""Session neighbours (V-SKNN, Ludewig & Jannach 2018): items of recent sessions like this one.

The processor keeps an item → sessions index (``FeatureDelta.neighbour_index``): per item,
the sessions that contain it, each scored by the session's last activity when it last held
the item, capped to the most recent ones (the cap is the store's). A request then only
reads: the index lists of the current session's items give the candidate neighbours and,
at the same time, which current items each one shares, so the similarity needs no session
loaded; only the ``k`` most similar neighbours' items are read, to score them.

Both stores run exactly these steps (Redis in Lua, see ``reco.adapters.redis_scripts``), in
the same order, so that their floating-point sums and their tie-breaks agree bit for bit:

1. The query: the current items, oldest first, length ``L``. Each distinct item weighs
   ``p / L`` at the position ``p`` (1-based) of its latest occurrence, so the most recent
   item weighs 1; ``step`` is how far from the end that occurrence is (1 for the last item).
2. Candidates: for each distinct item, most recent first, its index list (most recent
   first); a session's dot product is the sum of the weights of the items it was found
   under, in that order; its ``step`` the smallest of theirs; its recency the latest score.
3. At most ``sample`` candidates, the most recent (ties: the larger session id).
4. Similarity = dot / (number of distinct query items), as V-SKNN normalises; the ``k``
   most similar are the neighbours (ties: more recent, then the larger session id).
5. Each neighbour adds ``similarity / step`` to every distinct item it holds (V-SKNN's
   "div" weighting: a neighbour matched only on old items of the session counts less).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

Posting = tuple[str, float]
"""(session id, the session's last activity) in an item's index list."""


@dataclass(frozen=True, slots=True)
class QueryItem:
    item: str
    weight: float
    step: int


@dataclass(frozen=True, slots=True)
class Neighbour:
    session_id: str
    similarity: float
    step: int


def query(current: Sequence[str]) -> list[QueryItem]:
    """Step 1: the distinct items of ``current`` (oldest first), most recent first."""
    length = len(current)
    out: list[QueryItem] = []
    seen: set[str] = set()
    for step, item in enumerate(reversed(current), 1):
        if item not in seen:
            seen.add(item)
            out.append(QueryItem(item, (length - step + 1) / length, step))
    return out


def select_neighbours(
    items: Sequence[QueryItem],
    postings: Callable[[str], Sequence[Posting]],
    *,
    sample: int,
    k: int,
    exclude: str | None,
) -> list[Neighbour]:
    """Steps 2 to 4: the ``k`` nearest sessions, most similar first."""
    if not items or sample <= 0 or k <= 0:
        return []
    dot: dict[str, float] = {}
    last: dict[str, float] = {}
    step: dict[str, int] = {}
    for q in items:
        for session, ts in postings(q.item):
            if session == exclude:
                continue
            if session in dot:
                dot[session] += q.weight
                if ts > last[session]:
                    last[session] = ts
            else:
                dot[session], last[session], step[session] = q.weight, ts, q.step
    # Each order below is a chain of stable sorts on C-level keys, the last key first:
    # sorting by a key with reverse=True keeps the earlier order among equal keys.
    pool = sorted(dot, reverse=True)
    pool.sort(key=last.__getitem__, reverse=True)  # by (recency, session id), latest first
    del pool[sample:]
    n = len(items)
    similarity = {s: dot[s] / n for s in pool}
    pool.sort(key=similarity.__getitem__, reverse=True)  # by (similarity, recency, id)
    return [Neighbour(s, similarity[s], step[s]) for s in pool[:k]]


def neighbour_scores(
    neighbours: Iterable[tuple[Neighbour, Sequence[str]]],
) -> list[tuple[str, float]]:
    """Step 5: ``(item, score)`` strongest first (ties by item id), from each neighbour with
    its items; a neighbour whose items are gone (an expired session) adds nothing."""
    scores: dict[str, float] = {}
    for neighbour, session_items in neighbours:
        add = neighbour.similarity / neighbour.step
        for item in dict.fromkeys(session_items):
            scores[item] = scores.get(item, 0.0) + add
    # Highest first, ties by item id: the id order survives the stable sort by score.
    order = sorted(scores)
    order.sort(key=scores.__getitem__, reverse=True)
    return [(item, scores[item]) for item in order]
