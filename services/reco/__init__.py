"""reco-engine: interaction events in, recommendations that change within a second out."""

__version__ = "0.1.0"
