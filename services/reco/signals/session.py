"""Session assignment: the client's ``session_id``, else a 30-minute inactivity gap."""

from __future__ import annotations

from reco.signals.state import UserProfile


def assign_session(profile: UserProfile, ts: float, given: str | None, gap_s: float) -> str:
    """The session an event at ``ts`` belongs to; advances ``profile``'s session fields.

    A derived id is ``<user>#<n>``: deterministic, so replaying the log gives the same ids.
    """
    if given is not None:
        profile.session_id = given
        return given
    if profile.session_id is None or profile.last_ts is None or ts - profile.last_ts > gap_s:
        profile.session_seq += 1
        profile.session_id = f"{profile.user_id}#{profile.session_seq}"
    return profile.session_id
