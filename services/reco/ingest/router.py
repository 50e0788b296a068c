"""``POST /events``: one event object or a JSON array of them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from reco.events import EventIn, InvalidEvent
from reco.exceptions import BackendUnavailable
from reco.ingest.service import BatchTooLarge, IngestService
from reco.web.body import read_json
from reco.web.errors import error_responses
from reco.web.security import require_write

router = APIRouter(tags=["events"])

RETRY_AFTER_S = 1


class Rejection(BaseModel):
    index: int
    error: str


class IngestResponse(BaseModel):
    accepted: int
    rejected: list[Rejection]
    event_ids: list[str]


class IngestRejected(IngestResponse):
    """The 422 when no event is valid: the 202's fields, so a client reads one shape, and
    ``detail`` as in every other error body."""

    detail: str


async def get_ingest(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


async def get_max_body(request: Request) -> int:
    return int(request.app.state.settings.max_body_bytes)


# The body is read by hand (a batch keeps its valid events), so its schema is declared here.
_EVENT_SCHEMA = EventIn.model_json_schema()
_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _EVENT_SCHEMA,
                        {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1},
                    ]
                }
            }
        },
    }
}


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestResponse,
    summary="Send one event or a batch",
    description=(
        "Valid events are kept even when others in the batch are rejected; each rejection "
        "names its index and what was wrong. 202 means the accepted events are durable. "
        "When no event is valid the answer is 422 with the same body."
    ),
    openapi_extra=_BODY_SCHEMA,
    dependencies=[Depends(require_write)],
    responses=error_responses(400, 401, 403, 413, 429, 503)
    | {
        422: {
            "model": IngestRejected,
            "description": "No event is valid: each rejection names its index and why",
        }
    },
)
async def post_events(
    request: Request,
    ingest: Annotated[IngestService, Depends(get_ingest)],
    max_body: Annotated[int, Depends(get_max_body)],
) -> Any:
    body = await read_json(request, max_body)
    try:
        events, rejected = ingest.validate(body)
    except BatchTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    except InvalidEvent as exc:
        return _none_valid(str(exc), [])
    try:
        result = await run_in_threadpool(ingest.produce, events, rejected)
    except BackendUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"events not stored, send them again: {exc}",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    if result.accepted == 0:
        return _none_valid(
            f"no event is valid ({len(rejected)} rejected): each rejection says why", rejected
        )
    return {"accepted": result.accepted, "rejected": result.rejected, "event_ids": result.event_ids}


def _none_valid(detail: str, rejected: list[dict[str, Any]]) -> JSONResponse:
    body = {"accepted": 0, "rejected": rejected, "event_ids": [], "detail": detail}
    return JSONResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
