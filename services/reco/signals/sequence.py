"""Sequential transitions: item j following item i within a few steps, weighted by 1/distance.

This is the "sequential rules" signal of Ludewig and Jannach (2018): directed, and stronger
for immediate successors than for items two or three steps later.
"""

from __future__ import annotations

from collections.abc import Sequence


def transitions(session_items: Sequence[str], item: str, steps: int) -> list[tuple[str, float]]:
    """``(previous item, weight)`` for each of the last ``steps`` items before ``item``."""
    out: list[tuple[str, float]] = []
    n = len(session_items)
    for distance in range(1, min(steps, n) + 1):
        previous = session_items[n - distance]
        if previous != item:
            out.append((previous, 1.0 / distance))
    return out
