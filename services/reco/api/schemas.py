"""Response schemas of the api role (requests are query parameters or ``reco.catalog.ItemIn``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reasons: list[str] = Field(description="Why this item, strongest reason first.")
    title: str | None = None
    category: str | None = None
    price: float | None = None


class RecommendationsOut(BaseModel):
    user_id: str | None = None
    session_id: str | None = None
    item_id: str | None = None
    category: str | None = None
    items: list[RecommendedItem]
    personalised: bool = Field(
        description="False when no personal signal was found and popular items stand in."
    )
    recommendation_id: str | None = Field(
        None,
        description=(
            "This response's id (GET /recommendations): send it as `recommendation_id` with "
            "the events of its items (a click, a cart) to attribute them to it."
        ),
    )
    experiment: str | None = Field(
        None, description="The experiment the subject is in, if any (docs/experiments.md)."
    )
    variant: str | None = Field(None, description="The experiment's variant that served it.")


class ItemOut(BaseModel):
    item_id: str
    title: str | None = None
    category: str | None = None
    price: float | None = None
    in_stock: bool = True
    created_at: float | None = None


class ItemsUpserted(BaseModel):
    upserted: int
    items: list[ItemOut]
