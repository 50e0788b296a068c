"""The processor role: the only writer of features."""

from reco.processor.processor import BatchResult, Processor
from reco.processor.runner import ProcessorThread

__all__ = ["BatchResult", "Processor", "ProcessorThread"]
