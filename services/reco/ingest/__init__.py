"""The ingest role: validate, stamp, produce. Stateless."""

from reco.ingest.router import router
from reco.ingest.service import IngestResult, IngestService

__all__ = ["IngestResult", "IngestService", "router"]
