"""One error body for every 4xx and 5xx the roles answer, and the handlers that make it.

``{"detail": "<what is wrong; what to do>", "errors": [{"field", "location", "message"}]}``:
``detail`` is one line for a person, ``errors`` names each invalid field of a 422 for a
program (empty otherwise). FastAPI's own errors (a query parameter that fails its type, an
unknown path) come through the same handlers, so no client ever sees pydantic's error
objects, which carry the whole input. ``POST /events`` answers its 422 in the shape of its
202 (``IngestRejected`` in the ingest router). docs/errors.md lists every case.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from reco.exceptions import BackendTimeout, BackendUnavailable
from reco.metrics import BackendMetrics
from reco.validation import FieldError, field_errors

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1


class FieldErrorOut(BaseModel):
    field: str = Field(description="Path of the field: `count`, `[1].price`, `exclude[3]`.")
    location: str | None = Field(None, description="`body`, `query`, `path` or `header`.")
    message: str


class ErrorOut(BaseModel):
    """The body of every error response (but the 422 of ``POST /events``)."""

    detail: str = Field(description="What is wrong and, where a person can act, what to do.")
    errors: list[FieldErrorOut] = Field(
        default_factory=list, description="Each invalid field of a 422; empty otherwise."
    )


_DESCRIPTIONS = {
    400: "The body is empty, not UTF-8 or not JSON",
    401: "An API key is required: missing or not valid",
    403: "The API key may read but not write",
    404: "Not found",
    413: "The body or the batch is over its limit",
    422: "A parameter or the body is not valid; `errors` names each field",
    429: "Over the rate limit: retry after `Retry-After` seconds",
    503: "A backend is unavailable: retry after `Retry-After` seconds",
}
_RETRY_AFTER = {"description": "Seconds to wait", "schema": {"type": "integer"}}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}
READ_ERRORS = (401, 422, 429, 503)
"""What any read route can answer: keys, parameters, rate limit, backends."""
WRITE_ERRORS = (400, 401, 403, 413, 422, 429, 503)
"""What any route that takes a JSON body and writes can answer."""


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route, each code with ``ErrorOut`` and its headers."""
    return {
        code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]}
        | ({"headers": _HEADERS[code]} if code in _HEADERS else {})
        for code in codes
    }


def error_body(detail: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    return {
        "detail": detail,
        "errors": [
            {"field": e.field, "location": e.location, "message": e.message} for e in errors or []
        ],
    }


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(BackendUnavailable, _backend_unavailable)
    app.add_exception_handler(Exception, _unexpected)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse(error_body(str(exc.detail)), exc.status_code, headers=exc.headers)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors(), located=True)
    detail = "; ".join(str(e) for e in errors) or "the request is not valid"
    return JSONResponse(error_body(detail, errors), status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _backend_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A backend that does not answer is the client's cue to retry, not a 500."""
    log.warning("%s %s: backend unavailable: %s", request.method, request.url.path, exc)
    if isinstance(exc, BackendTimeout):
        metrics: BackendMetrics = request.app.state.metrics
        metrics.backend_timeouts.labels(exc.backend, exc.operation).inc()
    return JSONResponse(
        error_body(f"a backend is unavailable, retry shortly: {exc}"),
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answers; the client gets no internals.
    return JSONResponse(
        error_body(f"internal error on {request.method} {request.url.path}; it is logged"),
        status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
