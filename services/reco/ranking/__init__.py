"""The learned ranker: features per candidate, a LambdaRank model over them, and training
examples replayed from the event log through the engine's own path."""

RANKER = "ranker"
"""The model-store kind of ``reco train --ranker``'s models."""

__all__ = ["RANKER"]
