"""``/health/live`` (the process works: it answers and its loops make progress),
``/health/ready`` (its backends answer and it can serve), ``/metrics`` (Prometheus text).

The two probes mean different things to Kubernetes: a failing liveness probe restarts the
container, a failing readiness probe only takes it out of its Service. So liveness checks
only what a restart can fix (a consumer loop stuck in a call), never a backend that is
down (restarting every replica would not bring Redis back); readiness checks the backends.
docs/operations.md lists what each role checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

ReadinessCheck = Callable[[], bool]


class ProbeReport(BaseModel):
    status: str = Field(description="alive / stalled, or ready / not ready.")
    checks: dict[str, bool] = Field(description="Each check by name: passed or not.")


_REPORTS: dict[int | str, dict[str, Any]] = {
    503: {"model": ProbeReport, "description": "A check failed; `checks` says which."}
}


def probes_router(
    checks: Mapping[str, ReadinessCheck],
    registry: CollectorRegistry,
    live_checks: Mapping[str, ReadinessCheck] | None = None,
) -> APIRouter:
    router = APIRouter(tags=["operations"])
    liveness = dict(live_checks or {})

    @router.get(
        "/health/live",
        summary="The process works; 503: restart it",
        response_model=ProbeReport,
        responses=_REPORTS,
    )
    async def live() -> JSONResponse:
        return _report(liveness, "alive", "stalled")

    @router.get(
        "/health/ready",
        summary="Every backend answers and the features are current; 503: send no traffic",
        response_model=ProbeReport,
        responses=_REPORTS,
    )
    async def ready() -> JSONResponse:
        # Readiness asks the backends, which may take up to their timeouts: off the event
        # loop, so that a slow Redis does not also hold /health/live and the requests.
        return await run_in_threadpool(_report, checks, "ready", "not ready")

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _report(checks: Mapping[str, ReadinessCheck], good: str, bad: str) -> JSONResponse:
    results = {}
    for name, check in checks.items():
        try:
            results[name] = bool(check())
        except Exception:  # a probe reports; it never raises
            results[name] = False
    ok = all(results.values())
    return JSONResponse(
        {"status": good if ok else bad, "checks": results},
        status_code=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE,
    )
