"""The api role: serve recommendations, popular and similar items, and the catalog."""

from reco.api.routers import routers
from reco.api.service import Recommender

__all__ = ["Recommender", "routers"]
