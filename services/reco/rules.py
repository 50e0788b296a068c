"""Business rules applied at request time to ranked candidates, with the catalog's help.

Items that the catalog does not know yet (events can arrive before the catalog upsert)
count as in stock, and are dropped by a category or price filter, which they cannot meet.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from reco.catalog import Item
from reco.scoring import Candidate


@dataclass(frozen=True, slots=True)
class RuleOptions:
    exclude_seen: bool = True
    exclude_purchased: bool = True
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    in_stock_only: bool = True
    max_per_category: int | None = None
    exclude: frozenset[str] = frozenset()
    """Items the page already shows (or that must not appear for another reason)."""

    @property
    def needs_catalog(self) -> bool:
        return (
            self.in_stock_only
            or self.category is not None
            or self.min_price is not None
            or self.max_price is not None
            or self.max_per_category is not None
        )


def allowed(
    item_id: str,
    item: Item | None,
    options: RuleOptions,
    seen: Collection[str],
    purchased: Collection[str],
) -> bool:
    if item_id in options.exclude:
        return False
    if options.exclude_seen and item_id in seen:
        return False
    if options.exclude_purchased and item_id in purchased:
        return False
    if options.in_stock_only and item is not None and not item.in_stock:
        return False
    if options.category is not None and (item is None or item.category != options.category):
        return False
    if options.min_price is not None or options.max_price is not None:
        if item is None or item.price is None:
            return False
        if options.min_price is not None and item.price < options.min_price:
            return False
        if options.max_price is not None and item.price > options.max_price:
            return False
    return True


def diversify(
    candidates: Iterable[Candidate], items: Mapping[str, Item], max_per_category: int | None
) -> Iterator[Candidate]:
    """Keep the order, but at most ``max_per_category`` items of each known category."""
    counts: dict[str, int] = {}
    for cand in candidates:
        item = items.get(cand.item_id)
        category = item.category if item is not None else None
        if max_per_category is not None and category is not None:
            if counts.get(category, 0) >= max_per_category:
                continue
            counts[category] = counts.get(category, 0) + 1
        yield cand


def boost_new_items(
    candidates: list[Candidate], items: Mapping[str, Item], now: float, boost: float, days: float
) -> list[Candidate]:
    """Raise the score of items created in the last ``days`` (linearly less as they age)."""
    if boost <= 0 or days <= 0:
        return candidates
    horizon = days * 86400.0
    for cand in candidates:
        item = items.get(cand.item_id)
        if item is None or item.created_at is None:
            continue
        age = now - item.created_at
        if 0 <= age < horizon:
            cand.score *= 1.0 + boost * (1.0 - age / horizon)
    return sorted(candidates, key=lambda c: (-c.score, c.item_id))


def select(
    candidates: list[Candidate],
    items: Mapping[str, Item],
    options: RuleOptions,
    *,
    seen: Collection[str],
    purchased: Collection[str],
    count: int,
) -> list[Candidate]:
    """The first ``count`` candidates that pass every rule."""
    passing = (
        c for c in candidates if allowed(c.item_id, items.get(c.item_id), options, seen, purchased)
    )
    out: list[Candidate] = []
    for cand in diversify(passing, items, options.max_per_category):
        out.append(cand)
        if len(out) >= count:
            break
    return out
