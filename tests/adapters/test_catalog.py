"""The Catalog contract, run against every adapter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reco.catalog import ItemIn
from reco.ports import Catalog

pytestmark = pytest.mark.unit


def test_upsert_get_and_partial_update(catalog: Catalog) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    catalog.upsert([ItemIn(item_id="a", title="A", category="c", price=9.5, created_at=created)])
    item = catalog.get("a")
    assert item is not None
    assert (item.title, item.category, item.price, item.in_stock) == ("A", "c", 9.5, True)
    assert item.created_at == created.timestamp()

    catalog.upsert([ItemIn(item_id="a", in_stock=False)])
    item = catalog.get("a")
    assert item is not None
    assert (item.title, item.in_stock) == ("A", False), "fields left out keep their value"


def test_get_many_and_unknown(catalog: Catalog) -> None:
    catalog.upsert([ItemIn(item_id=f"i{n}", category="c") for n in range(5)])
    assert catalog.get("missing") is None
    found = catalog.get_many(["i1", "i3", "missing", "i4"])
    assert sorted(found) == ["i1", "i3", "i4"]


def test_unknown_item_upserted_later_is_seen(catalog: Catalog) -> None:
    assert catalog.get("late") is None  # now cached as absent
    catalog.upsert([ItemIn(item_id="late", title="Late")])
    item = catalog.get("late")
    assert item is not None
    assert item.title == "Late"


def test_same_item_twice_in_a_batch_merges(catalog: Catalog) -> None:
    catalog.upsert([ItemIn(item_id="a", title="A"), ItemIn(item_id="a", price=3.0)])
    item = catalog.get("a")
    assert item is not None
    assert (item.title, item.price) == ("A", 3.0)
