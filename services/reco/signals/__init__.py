"""Signals: pure, incremental, bounded updates from one event to the features it changes.

Nothing here does I/O. The processor feeds events in order per user through ``apply_event``,
which returns the changes as a ``FeatureDelta`` that a feature store writes in one go.
"""

from reco.signals.decay import ForwardDecay
from reco.signals.delta import FeatureDelta, SignalConfig, apply_event
from reco.signals.state import SessionState, UserProfile

__all__ = [
    "FeatureDelta",
    "ForwardDecay",
    "SessionState",
    "SignalConfig",
    "UserProfile",
    "apply_event",
]
