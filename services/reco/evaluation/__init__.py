"""Offline evaluation of recommendation quality: the protocols of EVALUATION.md.

The engine is evaluated through its real event path, in process (``engine``); the baselines
it is compared with are independent implementations of published methods (``baselines``).
``reco eval`` (``runner``) ties loading, the protocols, the metrics and the report together.
"""

from reco.evaluation.runner import EvalConfig, run

__all__ = ["EvalConfig", "run"]
