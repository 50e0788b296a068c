"""Per-user and per-session state the processor keeps to derive features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class UserProfile:
    """What the engine remembers of a user, most recent first, capped by the settings."""

    user_id: str
    last_ts: float | None = None
    session_id: str | None = None
    session_seq: int = 0
    recent: list[tuple[str, float, float]] = field(default_factory=list)
    """(item, timestamp, event weight), most recent first, one entry per item."""
    purchases: list[str] = field(default_factory=list)
    """Purchased items, most recent first."""
    shown: list[list[Any]] = field(default_factory=list)
    """Recent recommendations of an experiment, most recent first (``reco.experiments``)."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": self.user_id,
            "last_ts": self.last_ts,
            "session_id": self.session_id,
            "session_seq": self.session_seq,
            "recent": [list(r) for r in self.recent],
            "purchases": list(self.purchases),
        }
        if self.shown:
            data["shown"] = self.shown
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserProfile:
        return cls(
            user_id=data["user_id"],
            last_ts=data.get("last_ts"),
            session_id=data.get("session_id"),
            session_seq=int(data.get("session_seq", 0)),
            recent=[(str(i), float(t), float(w)) for i, t, w in data.get("recent", [])],
            purchases=[str(i) for i in data.get("purchases", [])],
            shown=[
                [str(r), str(e), str(v), float(t), [str(i) for i in items], [str(c) for c in done]]
                for r, e, v, t, items, done in data.get("shown", [])
            ],
        )


@dataclass(slots=True)
class SessionState:
    """The items of one session in order (oldest first), capped, with the last event time."""

    session_id: str
    user_id: str
    items: list[str] = field(default_factory=list)
    last_ts: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "items": list(self.items),
            "last_ts": self.last_ts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionState:
        return cls(
            session_id=data["session_id"],
            user_id=data["user_id"],
            items=[str(i) for i in data.get("items", [])],
            last_ts=float(data.get("last_ts", 0.0)),
        )
