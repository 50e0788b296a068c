"""A generated shop for ``reco dev --demo``: a catalog and a week of browsing.

Items come in small "families" (a shoe, its laces, its socks ...) inside categories;
shoppers prefer one or two categories and browse a family at a time, so co-view and
sequence signals have real structure to find. Deterministic for a given seed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

CATEGORIES = {
    "running": ["Trail Shoe", "Road Shoe", "Running Sock", "Hydration Vest", "Cap"],
    "camping": ["Tent", "Sleeping Bag", "Camp Stove", "Headlamp", "Mug"],
    "cycling": ["Road Bike", "Helmet", "Bike Light", "Jersey", "Water Bottle"],
    "kitchen": ["Chef Knife", "Cutting Board", "Skillet", "Spatula", "Apron"],
    "books": ["Novel", "Cookbook", "Atlas", "Field Guide", "Notebook"],
    "music": ["Headphones", "Speaker", "Turntable", "Record", "Cable"],
}
FAMILIES_PER_CATEGORY = 8
DEMO_USER = "demo-user"


@dataclass(frozen=True)
class DemoData:
    items: list[dict[str, Any]]
    events: list[dict[str, Any]]
    demo_user: str


def generate(seed: int = 7, users: int = 300, now: float | None = None) -> DemoData:
    rng = random.Random(seed)
    now = time.time() if now is None else now
    families: dict[str, list[list[str]]] = {}
    items: list[dict[str, Any]] = []
    for category, kinds in CATEGORIES.items():
        families[category] = []
        for number in range(FAMILIES_PER_CATEGORY):
            members = []
            for kind in kinds:
                item_id = f"{category}-{number:02d}-{kind.lower().replace(' ', '-')}"
                members.append(item_id)
                items.append(
                    {
                        "item_id": item_id,
                        "title": f"{kind} {number + 1}",
                        "category": category,
                        "price": round(rng.uniform(5, 300), 2),
                        "in_stock": rng.random() > 0.05,
                    }
                )
            families[category].append(members)

    events: list[dict[str, Any]] = []
    names = [DEMO_USER] + [f"shopper-{n:03d}" for n in range(1, users)]
    for user in names:
        tastes = rng.sample(sorted(CATEGORIES), 2)
        start = now - rng.uniform(3600, 7 * 86400)
        for session in range(rng.randint(1, 4)):
            ts = start + session * 3 * 3600
            family = rng.choice(families[rng.choice(tastes)])
            for _ in range(rng.randint(3, 9)):
                if rng.random() < 0.15:
                    family = rng.choice(families[rng.choice(tastes)])
                item = rng.choice(family)
                ts += rng.uniform(10, 240)
                kind = rng.choices(["view", "click", "cart", "purchase"], [70, 20, 7, 3])[0]
                events.append(
                    {
                        "event_id": f"demo-{len(events)}",
                        "user_id": user,
                        "item_id": item,
                        "type": kind,
                        "timestamp": min(ts, now),
                    }
                )
    events.sort(key=lambda e: e["timestamp"])
    return DemoData(items=items, events=events, demo_user=DEMO_USER)
