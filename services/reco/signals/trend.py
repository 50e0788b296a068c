"""Recent weight: each item's event weight in the last ``trend_window_s``, undecayed.

Popularity is decayed over days (``popularity_half_life_s``); whether an item is rising
*now* shows in its weight over the last window next to its share of popularity (the
ranker's ``trend`` feature). The weight is a sliding window estimated from two fixed time
buckets of ``trend_window_s`` each, as rate limiters do: the current bucket's weight plus
the previous one's times the part of it still inside the window.

A store keeps the buckets in a ring of ``RING`` slots (bucket ``b`` in slot ``b % RING``),
each slot a table of item weights capped like popularity, with which bucket it holds: a
write to a newer bucket empties the slot first, a write to an older one than the slot
holds is dropped (it is out of every window a request reads). Memory is bounded by the
ring, whatever the span of time replayed, and no key needs a TTL. The weights are raw, not
forward-decayed: a landmark move leaves them alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

RING: Final = 3
"""Slots of the ring: the two buckets a request reads and the one being replaced."""


def bucket_of(ts: float, window_s: float) -> int:
    """The time bucket holding ``ts``."""
    return math.floor(ts / window_s)


def slot_of(bucket: int) -> int:
    return bucket % RING


def ring_writes(
    recent: Mapping[int, Mapping[str, float]],
) -> list[tuple[int, int, Mapping[str, float]]]:
    """A batch's recent weights as ``(bucket, slot, {item: weight})``, oldest bucket first,
    the order a store writes them in (a later bucket in a slot replaces an earlier one)."""
    return [(bucket, slot_of(bucket), recent[bucket]) for bucket in sorted(recent)]


def sliding(
    current: Sequence[tuple[str, float]],
    previous: Sequence[tuple[str, float]],
    now: float,
    window_s: float,
) -> dict[str, float]:
    """Each item's weight in the window ending at ``now``, from the heads of the bucket
    holding ``now`` (``current``) and of the one before it (``previous``): an item absent
    from a head counts 0 there."""
    inside = 1.0 - (now / window_s - bucket_of(now, window_s))
    out = dict(current)
    if inside > 0:
        get = out.get
        for item, weight in previous:
            out[item] = get(item, 0.0) + weight * inside
    return out
