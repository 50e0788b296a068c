"""Dependencies of the api routers: the services on ``app.state`` and the rule options."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from reco.api.service import Recommender
from reco.events import MAX_ID_LENGTH
from reco.ports import Catalog
from reco.rules import RuleOptions

MAX_COUNT = 200
MAX_EXCLUDE = 500


# Dependencies are coroutines although they do no I/O: FastAPI runs a plain function in its
# thread pool, and three thread hops per request cost more than the request itself.
async def _recommender(request: Request) -> Recommender:
    service: Recommender = request.app.state.recommender
    return service


async def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


RecommenderDep = Annotated[Recommender, Depends(_recommender)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
Count = Annotated[int, Query(ge=1, le=MAX_COUNT, description="How many items to return.")]
ItemPath = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class RuleQuery(BaseModel):
    """Business rules as query parameters."""

    exclude_seen: bool = Field(
        True,
        description=(
            "Leave out items the user or session has interacted with; false for pages that "
            "show them again (e.g. 'continue shopping')."
        ),
    )
    exclude_purchased: bool = Field(True, description="Leave out items the user has bought.")
    category: str | None = Field(None, min_length=1, max_length=256)
    min_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    in_stock_only: bool = Field(True, description="Leave out items the catalog marks sold out.")
    max_per_category: int | None = Field(None, ge=1, description="Diversity: at most N a category.")
    exclude: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] = Field(
        default_factory=list,
        max_length=MAX_EXCLUDE,
        description="Items to leave out, e.g. those the page already shows (repeat the parameter).",
    )

    @field_validator("max_price")
    @classmethod
    def _price_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min_price")
        if value is not None and low is not None and low > value:
            raise ValueError(f"must be at least min_price ({value:g} < {low:g})")
        return value

    def options(self) -> RuleOptions:
        return RuleOptions(**(self.model_dump() | {"exclude": frozenset(self.exclude)}))


async def rule_options(query: Annotated[RuleQuery, Query()]) -> RuleOptions:
    return query.options()


RulesDep = Annotated[RuleOptions, Depends(rule_options)]


def one_subject(user_id: str | None, session_id: str | None) -> None:
    if (user_id is None) == (session_id is None):
        field = "session_id" if user_id is not None else "user_id"
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", field),
                    "msg": "give exactly one of user_id and session_id",
                }
            ]
        )
