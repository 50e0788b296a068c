"""Small synthetic shops whose best settings are known, for the tuning tests."""

from __future__ import annotations

import random
from typing import Any

RING = 20
"""Items ``i0`` .. ``i19`` in a ring."""


def ring_walks(
    sessions: int, *, start: float, every_s: float, seed: int = 0
) -> list[dict[str, Any]]:
    """``sessions`` sessions (one user each), ``every_s`` apart from ``start``: each views five
    consecutive items of the ring, ``i<k>`` then ``i<k+1>`` ... a minute apart.

    What comes next is always the following item of the ring: the sequence signal finds it
    first, while co-view also proposes the items before (co-occurrence has no direction), so
    a shop configured without the sequence weight ranks it worse than it could.
    """
    rng = random.Random(seed)
    out = []
    for n in range(sessions):
        first = rng.randrange(RING)
        at = start + n * every_s
        for step in range(5):
            out.append(
                {
                    "event_id": f"w{n}-{step}",
                    "user_id": f"u{n}",
                    "session_id": f"s{n}",
                    "item_id": f"i{(first + step) % RING}",
                    "type": "view",
                    "timestamp": at + 60 * step,
                }
            )
    return out


def random_views(
    sessions: int, *, start: float, every_s: float, seed: int = 0
) -> list[dict[str, Any]]:
    """Like ``ring_walks``, but each session views five items drawn uniformly from the
    ring: nothing predicts the next one, so no model of the candidates can beat another
    beyond noise."""
    rng = random.Random(seed)
    out = []
    for n in range(sessions):
        at = start + n * every_s
        for step in range(5):
            out.append(
                {
                    "event_id": f"r{n}-{step}",
                    "user_id": f"u{n}",
                    "session_id": f"s{n}",
                    "item_id": f"i{rng.randrange(RING)}",
                    "type": "view",
                    "timestamp": at + 60 * step,
                }
            )
    return out
