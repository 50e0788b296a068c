"""The app factory every role starts from: metadata, access policy, rate limit, probes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from reco import __version__, tracing
from reco.metrics import BackendMetrics
from reco.settings import HttpSettings
from reco.web.docs import install_docs
from reco.web.errors import install_error_handlers
from reco.web.probes import ReadinessCheck, probes_router
from reco.web.security import AccessPolicy, RateLimiter

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def base_app(
    *,
    role: str,
    settings: HttpSettings,
    metrics: BackendMetrics,
    checks: Mapping[str, ReadinessCheck],
    lifespan: Lifespan,
    description: str,
    live_checks: Mapping[str, ReadinessCheck] | None = None,
) -> FastAPI:
    app = FastAPI(
        title=f"reco-engine {role}",
        version=__version__,
        description=description,
        lifespan=lifespan,
        docs_url=None,  # install_docs serves them, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.access = AccessPolicy(tuple(settings.api_keys), tuple(settings.read_api_keys))
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s)
    app.include_router(probes_router(checks, metrics.registry, live_checks))
    install_docs(app)
    install_error_handlers(app)
    tracing.setup(app, settings, role)
    return app
