"""Item embeddings: trained offline by ``reco train``, served through an ANN index."""

from reco.embeddings.model import EmbeddingModel

EMBEDDINGS = "embeddings"
"""The model kind under which ``reco train`` publishes item vectors."""

__all__ = ["EMBEDDINGS", "EmbeddingModel"]
