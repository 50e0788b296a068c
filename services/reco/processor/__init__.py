"""The processor role: the only writer of features."""

from reco.processor.processor import BatchResult, Processor

__all__ = ["BatchResult", "Processor"]
