"""One router per resource; the separate api service mounts the same ones."""

from fastapi import APIRouter

from reco.api.routers import experiments, items, popular, recommendations

routers: list[APIRouter] = [
    recommendations.router,
    popular.router,
    items.router,
    experiments.router,
]

__all__ = ["routers"]
