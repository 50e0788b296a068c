"""``GET /popular``: time-decayed popular items, globally or in one category."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from reco.api.deps import Count, RecommenderDep, RulesDep
from reco.api.schemas import RecommendationsOut
from reco.web.errors import READ_ERRORS, error_responses
from reco.web.security import require_read

router = APIRouter(
    tags=["recommendations"],
    dependencies=[Depends(require_read)],
    responses=error_responses(*READ_ERRORS),
)


@router.get(
    "/popular",
    response_model=RecommendationsOut,
    summary="Popular items now",
    description="Score = event weights decayed to now (half-life RECO_POPULARITY_HALF_LIFE_S).",
)
async def get_popular(
    recommender: RecommenderDep, rules: RulesDep, count: Count = 10
) -> RecommendationsOut:
    return recommender.popular(count, rules)
