"""Co-view: items that appear together within a window of the same session."""

from __future__ import annotations

from collections.abc import Sequence


def coview_partners(session_items: Sequence[str], item: str, window: int) -> list[str]:
    """The earlier session items that a new view of ``item`` pairs with (both directions).

    A revisit of an item already in the window adds nothing: every pair it could form with
    the items since its last visit was counted when those items arrived.
    """
    recent = session_items[-window:]
    if item in recent:
        return []
    partners: list[str] = []
    for other in reversed(recent):
        if other not in partners:
            partners.append(other)
    return partners
