"""The user's recent items (one entry per item, most recent first) and purchases."""

from __future__ import annotations

from reco.signals.state import UserProfile


def remember(
    profile: UserProfile,
    item: str,
    ts: float,
    weight: float,
    *,
    purchase: bool,
    max_recent: int,
    max_purchases: int,
) -> None:
    """Move ``item`` to the front of the profile's recent items, keeping the caps."""
    recent = [r for r in profile.recent if r[0] != item]
    previous = next((r for r in profile.recent if r[0] == item), None)
    if previous is not None and previous[1] > ts:
        # Late event for an item seen since: keep the later sighting, the stronger weight.
        recent.insert(0, (item, previous[1], max(previous[2], weight)))
        recent.sort(key=lambda r: r[1], reverse=True)
    else:
        strongest = max(weight, previous[2]) if previous else weight
        recent.insert(0, (item, ts, strongest))
    del recent[max_recent:]
    profile.recent = recent
    if purchase:
        purchases = [p for p in profile.purchases if p != item]
        purchases.insert(0, item)
        del purchases[max_purchases:]
        profile.purchases = purchases


def context_weights(items: list[str], decay: float) -> list[tuple[str, float]]:
    """Distinct items, most recent first, weighted ``decay ** position``."""
    seen: set[str] = set()
    out: list[tuple[str, float]] = []
    weight = 1.0
    for item in items:
        if item in seen:
            continue
        seen.add(item)
        out.append((item, weight))
        weight *= decay
    return out
