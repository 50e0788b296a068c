"""Small synthetic shops whose best settings are known, for the tuning and ranker tests,
and the way in and out of the embedded app they use."""

from __future__ import annotations

import random
from collections.abc import Callable
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

    def walk(_: int) -> list[int]:
        first = rng.randrange(RING)
        return [(first + step) % RING for step in range(5)]

    return _views("w", sessions, start, every_s, walk)


def random_views(
    sessions: int, *, start: float, every_s: float, seed: int = 0
) -> list[dict[str, Any]]:
    """Like ``ring_walks``, but each session views five items drawn uniformly from the
    ring: nothing predicts the next one, so no model of the candidates can beat another
    beyond noise."""
    rng = random.Random(seed)
    return _views("r", sessions, start, every_s, lambda _: [rng.randrange(RING) for _ in range(5)])


def _views(
    prefix: str, sessions: int, start: float, every_s: float, items: Callable[[int], list[int]]
) -> list[dict[str, Any]]:
    out = []
    for n in range(sessions):
        at = start + n * every_s
        for step, item in enumerate(items(n)):
            out.append(
                {
                    "event_id": f"{prefix}{n}-{step}",
                    "user_id": f"u{n}",
                    "session_id": f"s{n}",
                    "item_id": f"i{item}",
                    "type": "view",
                    "timestamp": at + 60 * step,
                }
            )
    return out


def post_shop(client: Any, rows: list[dict[str, Any]], probe: tuple[str, ...] = ()) -> None:
    """Send ``rows`` through the app's ``POST /events`` (then a session ``probe`` viewing
    ``probe``'s items now) and wait until the app has applied them."""
    from tests.conftest import wait_until

    for batch in range(0, len(rows), 500):
        assert client.post("/events", json=rows[batch : batch + 500]).status_code == 202
    views = [
        {"user_id": "probe", "session_id": "probe", "item_id": item, "type": "view"}
        for item in probe
    ]
    if views:
        assert client.post("/events", json=views).status_code == 202
    wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s=30)


def probe(client: Any, count: int = 3) -> list[dict[str, Any]]:
    """The recommendations the ``probe`` session of ``post_shop`` gets now."""
    body = client.get("/recommendations", params={"session_id": "probe", "count": count}).json()
    assert "items" in body, body
    items: list[dict[str, Any]] = body["items"]
    return items


def gauge(client: Any, name: str) -> float:
    """The value of an unlabelled metric on the app's ``/metrics``."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")
