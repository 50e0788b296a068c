"""``GET /recommendations``: personal recommendations for a user or a session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from reco.api.deps import Count, RecommenderDep, RulesDep, one_subject
from reco.api.schemas import RecommendationsOut
from reco.events import MAX_ID_LENGTH
from reco.web.errors import READ_ERRORS, error_responses
from reco.web.security import require_read

router = APIRouter(
    tags=["recommendations"],
    dependencies=[Depends(require_read)],
    responses=error_responses(*READ_ERRORS),
)

Subject = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH)]


@router.get(
    "/recommendations",
    response_model=RecommendationsOut,
    summary="Recommendations for a user or a session",
    description=(
        "Items ranked by the hybrid score of the subject's recent items, each with the "
        "reasons it was chosen. A subject without history gets popular items "
        "(`personalised: false`), never an error."
    ),
)
async def get_recommendations(
    recommender: RecommenderDep,
    rules: RulesDep,
    user_id: Subject = None,
    session_id: Subject = None,
    count: Count = 10,
) -> RecommendationsOut:
    one_subject(user_id, session_id)
    return recommender.recommend(user_id=user_id, session_id=session_id, count=count, options=rules)
