"""The archiver role: its own consumer group, copying the event log into the archive."""

from reco.archiver.archiver import Archiver

__all__ = ["Archiver"]
