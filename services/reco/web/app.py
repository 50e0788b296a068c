"""The app factory every role starts from: metadata, access policy, rate limit, probes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from reco import __version__
from reco.metrics import Metrics
from reco.settings import HttpSettings
from reco.web.probes import ReadinessCheck, probes_router
from reco.web.security import AccessPolicy, RateLimiter

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def base_app(
    *,
    role: str,
    settings: HttpSettings,
    metrics: Metrics,
    checks: Mapping[str, ReadinessCheck],
    lifespan: Lifespan,
    description: str,
) -> FastAPI:
    app = FastAPI(
        title=f"reco-engine {role}",
        version=__version__,
        description=description,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.access = AccessPolicy(tuple(settings.api_keys), tuple(settings.read_api_keys))
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s)
    app.include_router(probes_router(checks, metrics.registry))
    return app


async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
