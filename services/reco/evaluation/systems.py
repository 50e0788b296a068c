"""What the harness asks of a system under test: the engine and every baseline alike.

The harness delivers events one at a time (``observe``) and asks for a ranking (``rank``)
between deliveries; it never hands a system the target, and it locates the target in the
returned :class:`~reco.evaluation.metrics.Ranking` itself. So whatever a system does, it can
only use events already delivered: the replay has no look-ahead by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reco.evaluation.metrics import Ranking
from reco.events import Event


class System(Protocol):
    name: str

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        """Learn from the training events (in time order). ``online``: keep learning from
        every event ``observe`` delivers later; otherwise the model stays frozen and only
        the state of the session being replayed advances."""

    def observe(self, event: Event) -> None:
        """One event of a replayed session (``event.session_id`` names it)."""

    def rank(
        self, *, session_id: str | None, user_id: str | None, n: int, exclude: frozenset[str]
    ) -> Ranking:
        """The best ``n`` candidates (more where the last tie group goes on) for a session or,
        when ``session_id`` is None, for a user's history; ``exclude`` are not candidates."""

    def end_session(self, session_id: str) -> None:
        """The replayed session is over: its state may go."""
