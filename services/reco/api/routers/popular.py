"""``GET /popular``: time-decayed popular items, globally or in one category."""

from __future__ import annotations

from fastapi import APIRouter

from reco.api.deps import Count, RecommenderDep, RulesDep
from reco.api.schemas import RecommendationsOut

router = APIRouter(tags=["recommendations"])


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
