"""Every Redis key of the feature store, named in this module and nowhere else.

All keys start with a prefix (default ``reco:``), so several engines can share one Redis.
``<p>`` below is that prefix; ids are used verbatim (Redis keys are binary safe).

=========================  ======  ============================================  ===========
key                        type    what it holds                                 bound
=========================  ======  ============================================  ===========
``<p>landmark``            string  forward-decay landmark of every stored value  one key
``<p>offsets``             hash    partition -> offset after its last applied    partitions
                                   record (moves with the features, atomically)
``<p>clock``               string  write counter: orders ``sessions`` and        one key
                                   ``seen`` by when a batch wrote them
``<p>coview:<item>``       zset    co-viewed item -> decayed weight              cap [1]_
``<p>seq:<item>``          zset    following item -> decayed, distance-weighted  cap [1]_
``<p>pop``                 zset    item -> decayed popularity                    cap [2]_
``<p>pop:cat:<category>``  zset    item -> decayed popularity in the category    cap [2]_
``<p>user:<user>``         hash    ``profile``: UserProfile JSON;                TTL [3]_
                                   ``session``: its current session id;
                                   ``version``: writes so far (cache key)
``<p>session:<session>``   hash    ``state``: SessionState JSON;                 TTL [4]_,
                                   ``version``: writes so far (cache key)        count [5]_
``<p>sessions``            zset    session id -> ``clock`` at its last write     count [5]_
``<p>seen``                zset    event id -> ``clock`` when first applied      window [6]_
``<p>nbr:<item>``          zset    session holding the item -> the session's     cap [7]_
                                   last activity when it last held the item
                                   (event time, not decayed)
``<p>experiments``         hash    ``<experiment>/<variant>/<kind>`` ->          variants x
                                   impressions or attributed events              event types
``<p>recent``              hash    ring slot -> the time bucket it holds         3 fields
``<p>recent:<slot>``       zset    item -> event weight in that bucket,          cap [2]_,
                                   undecayed (``reco.signals.trend``)            3 slots
=========================  ======  ============================================  ===========

.. [1] ``max_related_per_item``: trimmed to the strongest once 25 % over it, like the
   in-memory store, so that both keep exactly the same values.
.. [2] ``max_popular``, the same way.
.. [3] ``profile_ttl_s`` (30 days), renewed by every write: a user idle that long is forgotten.
.. [4] ``session_ttl_s`` (2 days), renewed by every write.
.. [5] ``max_sessions``: the apply script drops the least recently written sessions (their
   hash with its version) beyond it. A session that expired first leaves its id in
   ``sessions`` until then, so the index never exceeds the cap either.
.. [6] ``dedupe_window``: the oldest ids are dropped beyond it. At ~140 bytes per id (a
   36-character UUID, measured) the default window of 500 000 ids costs ~70 MB.
.. [7] ``neighbour_sessions_per_item``: the session-neighbour index, trimmed to the most
   recent sessions once 25 % over the cap, like the in-memory store. A session that
   expired or was dropped stays listed until trimmed away; the neighbour search skips it.

Co-view, sequence, popularity and neighbour-index keys carry no TTL: their number is bounded
by the catalog, and forward decay (the index: its cap) already makes stale values irrelevant.

The single store's Lua scripts build key names from the same constants (:func:`lua_prelude`)
with the prefix they receive as ``ARGV[1]``, since which keys a batch touches is only known
inside the script. That is fine on a single Redis (or Sentinel), never on a Cluster.

Redis Cluster (:class:`ClusterKeys`)
------------------------------------

A Cluster serves each key from the node owning its hash slot, and a script may only touch
keys of one slot, all declared in its ``KEYS``. So each key lives in a *slot group*: ``g``,
a stable hash of the id the key is named after (CRC-32 of its UTF-8, modulo
``redis_slot_groups``, 64 by default), written as a hash tag, ``{g}``, that Redis hashes
instead of the whole name. A user's, a session's and an item's keys spread over the
groups by their own ids, and the groups over the masters. Per group ``<t>`` is
``<p>{<g>}:``; the meta group's is ``<p>{m}:``. The prefix may hold no ``{`` or ``}``.

=============================  ======  ========================================  ==========
key                            type    what it holds                             bound
=============================  ======  ========================================  ==========
``<t>coview:<item>``,          as      as above, in the group of the item,       as above
``<t>seq:<item>``,             above   user, session or category (by its id)
``<t>nbr:<item>``,
``<t>pop:cat:<category>``,
``<t>user:<user>``,
``<t>session:<session>``
``<t>applied``                 hash    partition -> offset after the last batch  partitions
                                       applied to this group (moves with its
                                       writes, atomically)
``<t>scale``                   hash    ``landmark`` of the group's values; after  one key
                                       a move, ``from`` (the landmark before) and
                                       the ``coview`` and ``popularity`` factors
``<t>clock``                   string  the group's write counter                 one key
``<t>sessions``                zset    the group's sessions by ``clock``         count [8]_
``<t>dropped``                 set     sessions past the cap whose hashes are    count [8]_
                                       deleted next (by the writer, else by the
                                       next recovery)
``<t>seen``                    zset    event ids of the group by ``clock``       window [8]_
``<p>{m}:landmark``            string  the landmark batches are folded against   one key
``<p>{m}:offsets``             hash    partition -> offset after the last        partitions
                                       batch journaled
``<p>{m}:pending``             hash    batch id -> journal (every group's        batches in
                                       writes) until all groups applied it       flight
``<p>{m}:moved``               hash    the last landmark move: ``from``, ``to``, one key
                                       factors, ``done``
``<p>{m}:mover``               string  lease of the process finishing a move     TTL
``<p>{m}:experiments``         hash    as above, written with the journal        as above
``<p>{m}:pop``, ``applied``,   zset,   global popularity: the meta group         cap [2]_
``scale``                      hashes
``<p>{m}:recent``,             as      as above, in the meta group               as above
``<p>{m}:recent:<slot>``       above
=============================  ======  ========================================  ==========

.. [8] ``max_sessions`` and ``dedupe_window`` split over the groups (rounded up): each
   group keeps its own most recent sessions and event ids, so the store holds at most the
   cap rounded up to a multiple of the groups, and the ones dropped are the least recent
   of their group rather than of the store.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Final, Protocol

from reco.signals.trend import RING

DEFAULT_PREFIX: Final = "reco:"

LANDMARK: Final = "landmark"
OFFSETS: Final = "offsets"
CLOCK: Final = "clock"
COVIEW: Final = "coview:"
SEQUENCE: Final = "seq:"
POPULAR: Final = "pop"
CATEGORY_POPULAR: Final = "pop:cat:"
USER: Final = "user:"
SESSION: Final = "session:"
SESSIONS: Final = "sessions"
EXPERIMENTS: Final = "experiments"
RECENT: Final = "recent"
RECENT_SLOT: Final = "recent:"
SEEN: Final = "seen"
NEIGHBOURS: Final = "nbr:"
# Cluster only (ClusterKeys).
META: Final = "m"
PENDING: Final = "pending"
MOVED: Final = "moved"
MOVER: Final = "mover"
APPLIED: Final = "applied"
SCALE: Final = "scale"
DROPPED: Final = "dropped"

FAMILIES: Final = (COVIEW, SEQUENCE, CATEGORY_POPULAR, USER, SESSION, NEIGHBOURS)
"""Key families with an id after the prefix; the other keys are one each."""

PROFILE_FIELD: Final = "profile"
STATE_FIELD: Final = "state"
SESSION_FIELD: Final = "session"
VERSION_FIELD: Final = "version"

_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")


def _glob_literal(text: str) -> str:
    """``text`` as a SCAN ``MATCH`` pattern that matches only itself."""
    return _GLOB_SPECIALS.sub(r"\\\1", text)


class KeyLayout(Protocol):
    """What the reads of the Redis stores need to know of a key layout
    (:class:`RedisKeys` on one Redis, :class:`ClusterKeys` on a Cluster)."""

    @property
    def landmark(self) -> str: ...

    @property
    def offsets(self) -> str: ...

    @property
    def experiments(self) -> str: ...

    @property
    def session_indexes(self) -> tuple[str, ...]:
        """The zsets that list the stored sessions."""

    def coview(self, item: str) -> str: ...

    def sequence(self, item: str) -> str: ...

    def popular(self, category: str | None = None) -> str: ...

    @property
    def recent_ring(self) -> str:
        """Which time bucket each ring slot of recent weights holds."""

    def recent(self, slot: int) -> str:
        """A ring slot's recent weights (``reco.signals.trend``)."""

    def neighbours(self, item: str) -> str: ...

    def user(self, user_id: str) -> str: ...

    def session(self, session_id: str) -> str: ...

    def pattern(self, family: str) -> str:
        """SCAN ``MATCH`` pattern of every key of ``family`` (``COVIEW``, ``USER``, ...); it
        may match a few keys that are not (:meth:`strip` says which are)."""

    def strip(self, key: str, family: str) -> str | None:
        """The id in ``key`` when it is a key of ``family``, else ``None``."""


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    @property
    def landmark(self) -> str:
        return self.prefix + LANDMARK

    @property
    def offsets(self) -> str:
        return self.prefix + OFFSETS

    @property
    def clock(self) -> str:
        return self.prefix + CLOCK

    @property
    def experiments(self) -> str:
        return self.prefix + EXPERIMENTS

    @property
    def sessions(self) -> str:
        return self.prefix + SESSIONS

    @property
    def seen(self) -> str:
        return self.prefix + SEEN

    @property
    def session_indexes(self) -> tuple[str, ...]:
        return (self.sessions,)

    @property
    def singletons(self) -> tuple[str, ...]:
        """Every key that is not in a family, the offsets and the landmark last."""
        return (
            self.popular(),
            self.recent_ring,
            *(self.recent(slot) for slot in range(RING)),
            self.sessions,
            self.seen,
            self.clock,
            self.experiments,
            self.offsets,
            self.landmark,
        )

    def coview(self, item: str) -> str:
        return self.prefix + COVIEW + item

    def sequence(self, item: str) -> str:
        return self.prefix + SEQUENCE + item

    def popular(self, category: str | None = None) -> str:
        if category is None:
            return self.prefix + POPULAR
        return self.prefix + CATEGORY_POPULAR + category

    @property
    def recent_ring(self) -> str:
        return self.prefix + RECENT

    def recent(self, slot: int) -> str:
        return self.prefix + RECENT_SLOT + str(slot)

    def neighbours(self, item: str) -> str:
        return self.prefix + NEIGHBOURS + item

    def user(self, user_id: str) -> str:
        return self.prefix + USER + user_id

    def session(self, session_id: str) -> str:
        return self.prefix + SESSION + session_id

    def pattern(self, family: str) -> str:
        """SCAN ``MATCH`` pattern of every key of ``family`` (``COVIEW``, ``USER``, ...).

        The prefix is escaped: a ``*`` or ``[`` in it must not match other engines' keys.
        """
        return _glob_literal(self.prefix) + family + "*"

    def strip(self, key: str, family: str) -> str | None:
        """The id in ``key``, a key of ``family``."""
        head = self.prefix + family
        return key[len(head) :] if key.startswith(head) else None


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    """The key names of a Redis Cluster store: every key in a slot group (module docstring).

    A group is an ``int`` (0 to ``groups`` - 1) or :data:`META`."""

    prefix: str = DEFAULT_PREFIX
    groups: int = 64

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(
                f"Redis key prefix {self.prefix!r} holds a brace: on a Cluster the store puts "
                "a hash tag ({...}) after the prefix, and Redis hashes the first one it finds"
            )
        if self.groups < 1:
            raise ValueError(f"redis_slot_groups must be >= 1, got {self.groups}")

    def group_of(self, some_id: str) -> int:
        """The slot group of a user, session, item, category or event id."""
        return zlib.crc32(some_id.encode()) % self.groups

    def tag(self, group: int | str) -> str:
        """``<prefix>{<group>}:``, the head of every key of ``group``."""
        return f"{self.prefix}{{{group}}}:"

    @property
    def all_groups(self) -> tuple[int | str, ...]:
        """Every slot group, the meta group last."""
        return (*range(self.groups), META)

    # -- the meta group ------------------------------------------------------------------
    @property
    def landmark(self) -> str:
        return self.tag(META) + LANDMARK

    @property
    def offsets(self) -> str:
        return self.tag(META) + OFFSETS

    @property
    def pending(self) -> str:
        return self.tag(META) + PENDING

    @property
    def moved(self) -> str:
        return self.tag(META) + MOVED

    @property
    def mover(self) -> str:
        return self.tag(META) + MOVER

    @property
    def experiments(self) -> str:
        return self.tag(META) + EXPERIMENTS

    # -- every group ---------------------------------------------------------------------
    def applied(self, group: int | str) -> str:
        return self.tag(group) + APPLIED

    def scale(self, group: int | str) -> str:
        return self.tag(group) + SCALE

    def clock(self, group: int | str) -> str:
        return self.tag(group) + CLOCK

    def sessions(self, group: int | str) -> str:
        return self.tag(group) + SESSIONS

    def dropped(self, group: int | str) -> str:
        return self.tag(group) + DROPPED

    def seen(self, group: int | str) -> str:
        return self.tag(group) + SEEN

    @property
    def session_indexes(self) -> tuple[str, ...]:
        return tuple(self.sessions(g) for g in range(self.groups))

    # -- keys named after an id, in the id's group ----------------------------------------
    def _keyed(self, family: str, some_id: str) -> str:
        return self.tag(self.group_of(some_id)) + family + some_id

    def coview(self, item: str) -> str:
        return self._keyed(COVIEW, item)

    def sequence(self, item: str) -> str:
        return self._keyed(SEQUENCE, item)

    def popular(self, category: str | None = None) -> str:
        if category is None:
            return self.tag(META) + POPULAR
        return self._keyed(CATEGORY_POPULAR, category)

    @property
    def recent_ring(self) -> str:
        return self.tag(META) + RECENT

    def recent(self, slot: int) -> str:
        return self.tag(META) + RECENT_SLOT + str(slot)

    def neighbours(self, item: str) -> str:
        return self._keyed(NEIGHBOURS, item)

    def user(self, user_id: str) -> str:
        return self._keyed(USER, user_id)

    def session(self, session_id: str) -> str:
        return self._keyed(SESSION, session_id)

    def pattern(self, family: str = "") -> str:
        """SCAN ``MATCH`` pattern of the keys of ``family`` in every group (every key of
        the store with ``""``)."""
        head = _glob_literal(self.prefix) + "{"
        return head + "*" if not family else head + "*}:" + family + "*"

    def parse(self, key: str) -> tuple[str, str] | None:
        """``(group, rest)`` of a key of this store (``rest`` after ``{group}:``), or
        ``None`` for another key."""
        head = self.prefix + "{"
        if not key.startswith(head):
            return None
        group, sep, rest = key[len(head) :].partition("}:")
        if not sep or not (group == META or group.isdigit()):
            return None
        return group, rest

    def strip(self, key: str, family: str) -> str | None:
        parsed = self.parse(key)
        if parsed is None or not parsed[1].startswith(family):
            return None
        some_id = parsed[1][len(family) :]
        # A SCAN pattern's "*" spans "}:", so an id holding "}:coview:" could pass as
        # another key; the group must be the id's own.
        return some_id if parsed[0] == str(self.group_of(some_id)) else None


def _lua(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid Lua string literal


def lua_fields() -> str:
    """Lua locals naming the hash fields, for every script that reads or writes them."""
    fields = {
        "F_PROFILE": PROFILE_FIELD,
        "F_STATE": STATE_FIELD,
        "F_SESSION": SESSION_FIELD,
        "F_VERSION": VERSION_FIELD,
    }
    return "".join(f"local {name} = {_lua(value)}\n" for name, value in fields.items())


def lua_prelude() -> str:
    """Lua locals and functions naming the single store's keys, for the top of its scripts.

    Rendered from the constants above so that Python and the scripts cannot disagree; the
    scripts take the prefix as ``ARGV[1]``. (The Cluster store's scripts name no key: they
    are given every key they touch.)
    """
    constants = {
        "K_LANDMARK": LANDMARK,
        "K_OFFSETS": OFFSETS,
        "K_CLOCK": CLOCK,
        "K_POPULAR": POPULAR,
        "K_SESSIONS": SESSIONS,
        "K_SEEN": SEEN,
        "K_EXPERIMENTS": EXPERIMENTS,
        "K_RECENT": RECENT,
    }
    families = {
        "k_coview": COVIEW,
        "k_sequence": SEQUENCE,
        "k_category": CATEGORY_POPULAR,
        "k_user": USER,
        "k_session": SESSION,
        "k_neighbours": NEIGHBOURS,
        "k_recent": RECENT_SLOT,
    }
    lines = ["local P = ARGV[1]"]
    lines += [f"local {name} = P .. {_lua(suffix)}" for name, suffix in constants.items()]
    lines += [
        f"local function {name}(id) return P .. {_lua(suffix)} .. id end"
        for name, suffix in families.items()
    ]
    return "\n".join(lines) + "\n"
