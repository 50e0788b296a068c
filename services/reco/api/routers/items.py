"""The catalog (``PUT /items``, ``GET /items/{item_id}``) and similar items."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from reco.api.deps import CatalogDep, Count, RecommenderDep, RulesDep
from reco.api.schemas import ItemOut, ItemsUpserted, RecommendationsOut
from reco.catalog import ItemIn
from reco.events import MAX_ID_LENGTH
from reco.validation import echo
from reco.web.body import read_json
from reco.web.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from reco.web.security import require_read, require_write

router = APIRouter(tags=["items"])

ItemId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]
# A list and an object are told apart by hand: validating the union would name its
# branches in every message ("list[ItemIn].1.price").
_BATCH = TypeAdapter(list[ItemIn])
# Inlined: a "$defs" inside an operation's schema is not where an OpenAPI document's
# references resolve, so a TypeAdapter's schema of the union would point nowhere.
_ITEM_SCHEMA = ItemIn.model_json_schema()
_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [_ITEM_SCHEMA, {"type": "array", "items": _ITEM_SCHEMA, "minItems": 1}]
                }
            }
        },
    }
}


@router.put(
    "/items",
    response_model=ItemsUpserted,
    summary="Create or update catalog items (one or a batch)",
    description="Fields left out keep their stored value. The batch is all or nothing.",
    openapi_extra=_BODY_SCHEMA,
    dependencies=[Depends(require_write)],
    responses=error_responses(*WRITE_ERRORS),
)
async def put_items(request: Request, catalog: CatalogDep) -> ItemsUpserted:
    settings = request.app.state.settings
    body = await read_json(request, settings.max_body_bytes)
    if isinstance(body, list) and len(body) > settings.max_batch_events:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the batch has {len(body)} items; the limit is {settings.max_batch_events} "
            "(RECO_MAX_BATCH_EVENTS): split it",
        )
    updates = _parse_items(body)
    if not updates:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "the batch is empty; send at least one item"
        )
    stored = await run_in_threadpool(catalog.upsert, updates)
    return ItemsUpserted(upserted=len(stored), items=[ItemOut(**i.to_dict()) for i in stored])


def _parse_items(body: Any) -> list[ItemIn]:
    try:
        if isinstance(body, list):
            return _BATCH.validate_python(body)
        return [ItemIn.model_validate(body)]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([e | {"loc": ("body", *e["loc"])} for e in errors]) from None


@router.get(
    "/items/{item_id}",
    response_model=ItemOut,
    summary="One catalog item",
    dependencies=[Depends(require_read)],
    responses=error_responses(*READ_ERRORS, 404),
)
async def get_item(item_id: ItemId, catalog: CatalogDep) -> ItemOut:
    item = catalog.get(item_id)
    if item is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"item {echo(item_id)} is not in the catalog; PUT /items adds it",
        )
    return ItemOut(**item.to_dict())


@router.get(
    "/items/{item_id}/similar",
    response_model=RecommendationsOut,
    summary="Items related to one item",
    description="Co-viewed and next-viewed items; popular items of its category when cold.",
    dependencies=[Depends(require_read)],
    responses=error_responses(*READ_ERRORS),
)
async def get_similar(
    item_id: ItemId, recommender: RecommenderDep, rules: RulesDep, count: Count = 10
) -> RecommendationsOut:
    return recommender.similar(item_id, count, rules)
