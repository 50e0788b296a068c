"""``GET /experiments``: the running experiments' variants compared."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from reco.api.deps import RecommenderDep
from reco.web.errors import READ_ERRORS, error_responses
from reco.web.security import require_read

router = APIRouter(
    tags=["experiments"],
    dependencies=[Depends(require_read)],
    responses=error_responses(*READ_ERRORS),
)


@router.get(
    "/experiments",
    summary="The experiments' variants compared",
    description=(
        "For each configured experiment (RECO_EXPERIMENTS, spec.experiments), each variant's "
        "impressions (recommendations served) and, per event type, the events attributed to "
        "them per impression with a 95 % interval, and each variant's difference to the first "
        "(control) with its interval. Counted by the processor: docs/experiments.md."
    ),
)
async def get_experiments(recommender: RecommenderDep) -> dict[str, Any]:
    return {"experiments": [r.to_dict() for r in recommender.experiment_report()]}
