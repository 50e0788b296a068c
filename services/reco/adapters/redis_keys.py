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

The Lua scripts build key names from the same constants (:func:`lua_prelude`) with the prefix
they receive as ``ARGV[1]``, since which keys a batch touches is only known inside the
script. That is fine on a single Redis (or Sentinel); on Redis Cluster use a prefix with a
hash tag, e.g. ``{reco}:``, so that every key lands in the same slot.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

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
SEEN: Final = "seen"
NEIGHBOURS: Final = "nbr:"

FAMILIES: Final = (COVIEW, SEQUENCE, CATEGORY_POPULAR, USER, SESSION, NEIGHBOURS)
"""Key families with an id after the prefix; the other keys are one each."""

PROFILE_FIELD: Final = "profile"
STATE_FIELD: Final = "state"
SESSION_FIELD: Final = "session"
VERSION_FIELD: Final = "version"

_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")


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
    def sessions(self) -> str:
        return self.prefix + SESSIONS

    @property
    def seen(self) -> str:
        return self.prefix + SEEN

    @property
    def singletons(self) -> tuple[str, ...]:
        """Every key that is not in a family, the offsets and the landmark last."""
        return (self.popular(), self.sessions, self.seen, self.clock, self.offsets, self.landmark)

    def coview(self, item: str) -> str:
        return self.prefix + COVIEW + item

    def sequence(self, item: str) -> str:
        return self.prefix + SEQUENCE + item

    def popular(self, category: str | None = None) -> str:
        if category is None:
            return self.prefix + POPULAR
        return self.prefix + CATEGORY_POPULAR + category

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
        return _GLOB_SPECIALS.sub(r"\\\1", self.prefix) + family + "*"

    def strip(self, key: str, family: str) -> str:
        """The id in ``key``, a key of ``family``."""
        return key[len(self.prefix) + len(family) :]


def lua_prelude() -> str:
    """Lua locals and functions naming the keys, for the top of every script.

    Rendered from the constants above so that Python and the scripts cannot disagree; the
    scripts take the prefix as ``ARGV[1]``.
    """

    def lua(text: str) -> str:
        return json.dumps(text)  # a JSON string of ASCII is a valid Lua string literal

    constants = {
        "K_LANDMARK": LANDMARK,
        "K_OFFSETS": OFFSETS,
        "K_CLOCK": CLOCK,
        "K_POPULAR": POPULAR,
        "K_SESSIONS": SESSIONS,
        "K_SEEN": SEEN,
    }
    families = {
        "k_coview": COVIEW,
        "k_sequence": SEQUENCE,
        "k_category": CATEGORY_POPULAR,
        "k_user": USER,
        "k_session": SESSION,
        "k_neighbours": NEIGHBOURS,
    }
    fields = {
        "F_PROFILE": PROFILE_FIELD,
        "F_STATE": STATE_FIELD,
        "F_SESSION": SESSION_FIELD,
        "F_VERSION": VERSION_FIELD,
    }
    lines = ["local P = ARGV[1]"]
    lines += [f"local {name} = P .. {lua(suffix)}" for name, suffix in constants.items()]
    lines += [
        f"local function {name}(id) return P .. {lua(suffix)} .. id end"
        for name, suffix in families.items()
    ]
    lines += [f"local {name} = {lua(value)}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"
