"""A batch as the Redis Cluster store writes it: a journal of one script call per slot group.

:func:`journal` splits a ``FeatureDelta`` by slot group (:class:`ClusterKeys`): each group's
call (:class:`GroupWrite`) carries every key it writes, in ``KEYS`` order, and a payload
that names them by index, so that ``GROUP_APPLY`` never builds a key name. The journal is
stored whole on the meta slot before any group is written (step a of
:mod:`reco.adapters.redis_cluster`), so that whoever finds it there can finish the batch
exactly as its writer would have: the key names, the caps and the blobs are all in it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from reco.adapters.redis_keys import META, ClusterKeys
from reco.signals import FeatureDelta
from reco.signals.trend import ring_writes


class Limits(NamedTuple):
    """The caps ``GROUP_APPLY`` applies, per list or per group (in the payload's order)."""

    max_related: int
    max_popular: int
    sessions_per_group: int
    window_per_group: int
    profile_ttl_s: int
    session_ttl_s: int
    slack: float
    neighbours_per_item: int


@dataclass(frozen=True, slots=True)
class GroupWrite:
    """One ``GROUP_APPLY`` call: ``keys`` (the group's applied offsets first, then its
    scale) and ``args`` (the payload as JSON, then the profile and session JSONs)."""

    group: str
    keys: list[str]
    args: list[str]


@dataclass(frozen=True, slots=True)
class Journal:
    batch: str
    landmark: float
    offsets: list[tuple[int, int]]
    writes: list[GroupWrite] = field(default_factory=list)

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "batch": self.batch,
                "landmark": self.landmark,
                "offsets": self.offsets,
                "writes": [[w.group, w.keys, w.args] for w in self.writes],
            }
        )

    @classmethod
    def loads(cls, blob: str | bytes) -> Journal:
        raw = orjson.loads(blob)
        return cls(
            batch=raw["batch"],
            landmark=float(raw["landmark"]),
            offsets=[(int(p), int(o)) for p, o in raw["offsets"]],
            writes=[GroupWrite(g, list(k), list(a)) for g, k, a in raw["writes"]],
        )


def batch_id(offsets: Mapping[int, int]) -> str:
    """The same for the same partitions and target offsets, so that a batch has one name
    whoever journals it; a batch without offsets (tests) gets a name of its own."""
    if not offsets:
        return "none:" + uuid.uuid4().hex
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


class _Group:
    """One group's keys and payload, filled as the delta is split."""

    def __init__(self, keys: ClusterKeys, group: int | str) -> None:
        self.group = str(group)
        self.names = [keys.applied(group), keys.scale(group)]
        self._index = {name: i + 1 for i, name in enumerate(self.names)}
        self.blobs: list[str] = []
        self.ops: dict[str, Any] = {
            "coview": [],
            "sequence": [],
            "popularity": [],
            "recent": [],
            "index": [],
            "users": [],
            "states": [],
            "events": [],
        }

    def key(self, name: str) -> int:
        """``name``'s index in ``KEYS`` (from 1, as Lua counts)."""
        at = self._index.get(name)
        if at is None:
            self.names.append(name)
            at = self._index[name] = len(self.names)
        return at

    def blob(self, text: bytes) -> int:
        """The ``ARGV`` index of a profile or session JSON (``ARGV[1]`` is the payload)."""
        self.blobs.append(text.decode())
        return 1 + len(self.blobs)

    def write(self, landmark: float, offsets: list[tuple[int, int]], limits: Limits) -> GroupWrite:
        payload = {"landmark": landmark, "offsets": offsets, "limits": list(limits), **self.ops}
        return GroupWrite(self.group, self.names, [orjson.dumps(payload).decode(), *self.blobs])


def journal(delta: FeatureDelta, keys: ClusterKeys, limits: Limits) -> Journal:
    """``delta`` as one write per slot group it touches (the meta group for the global
    popularity and the recent weights), each with its keys declared."""
    groups: dict[int | str, _Group] = {}

    def group(of: int | str) -> _Group:
        found = groups.get(of)
        if found is None:
            found = groups[of] = _Group(keys, of)
        return found

    def lists(op: str, tables: Mapping[str, Mapping[str, float]], name: Any) -> None:
        for some_id, values in tables.items():
            g = group(keys.group_of(some_id))
            g.ops[op].append([g.key(name(some_id)), values])

    lists("coview", delta.coview, keys.coview)
    lists("sequence", delta.sequence, keys.sequence)
    lists("popularity", delta.category_popularity, keys.popular)
    lists("index", delta.neighbour_index, keys.neighbours)
    if delta.popularity:
        meta = group(META)
        meta.ops["popularity"].append([meta.key(keys.popular()), delta.popularity])
    for bucket, slot, items in ring_writes(delta.recent):
        meta = group(META)
        ring, key = meta.key(keys.recent_ring), meta.key(keys.recent(slot))
        meta.ops["recent"].append([ring, key, slot, bucket, items])
    for user, profile in delta.profiles.items():
        g = group(keys.group_of(user))
        blob = g.blob(orjson.dumps(profile.to_dict()))
        g.ops["users"].append([g.key(keys.user(user)), profile.session_id, blob])
    for session, state in delta.sessions.items():
        gid = keys.group_of(session)
        g = group(gid)
        _index_keys(g, keys, gid, "clock", "sessions", "dropped")
        blob = g.blob(orjson.dumps(state.to_dict()))
        g.ops["states"].append([g.key(keys.session(session)), session, blob])
    for event_id in delta.event_ids:
        gid = keys.group_of(event_id)
        g = group(gid)
        _index_keys(g, keys, gid, "clock", "seen")
        g.ops["events"].append(event_id)

    offsets = sorted(delta.offsets.items())
    return Journal(
        batch=batch_id(delta.offsets),
        landmark=float(delta.landmark),
        offsets=offsets,
        writes=[g.write(delta.landmark, offsets, limits) for g in groups.values()],
    )


def _index_keys(g: _Group, keys: ClusterKeys, gid: int, *names: str) -> None:
    """Name the group's clock, sessions, dropped or seen key in the payload."""
    for name in names:
        if name not in g.ops:
            g.ops[name] = g.key(getattr(keys, name)(gid))
