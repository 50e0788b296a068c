"""Catalog items: the wire schema of ``PUT /items`` and the record the rules read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from reco.events import Identifier


def _rfc3339_only(value: Any) -> Any:
    # Pydantic would take a number as seconds, or as milliseconds past 2e10: a unit guessed
    # from the size. The schema says RFC 3339, so the check does too.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError(
            "must be an RFC 3339 date-time with a time zone, e.g. 2026-03-01T12:30:00Z"
        )
    return value


class ItemIn(BaseModel):
    """One catalog item as a client sends it; fields left out keep their stored value."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    item_id: Identifier
    title: str | None = Field(None, max_length=1000)
    category: str | None = Field(None, min_length=1, max_length=256)
    # Strict: the schema says number and boolean, so "9.5", 0 and "yes" are refused rather
    # than read as what pydantic guesses they mean.
    price: float | None = Field(None, ge=0, strict=True)
    in_stock: bool | None = Field(None, strict=True)
    created_at: Annotated[AwareDatetime | None, BeforeValidator(_rfc3339_only)] = None


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str | None = None
    category: str | None = None
    price: float | None = None
    in_stock: bool = True
    created_at: float | None = None

    def merged(self, update: ItemIn) -> Item:
        """This item with the fields that ``update`` sets."""
        return Item(
            item_id=self.item_id,
            title=update.title if update.title is not None else self.title,
            category=update.category if update.category is not None else self.category,
            price=update.price if update.price is not None else self.price,
            in_stock=update.in_stock if update.in_stock is not None else self.in_stock,
            created_at=(
                update.created_at.timestamp() if update.created_at is not None else self.created_at
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "category": self.category,
            "price": self.price,
            "in_stock": self.in_stock,
            "created_at": self.created_at,
        }
