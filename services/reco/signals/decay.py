"""Forward exponential decay (Cormode, Shkapenyuk, Srivastava, Xu; ICDE 2009).

An event of weight ``w`` at time ``t`` is stored as ``w * 2 ** ((t - L) / h)`` for a fixed
landmark ``L``. Sums of stored values rank items exactly as the decayed sums
``sum w * 2 ** ((now - t) / -h)`` do, for any ``now``, so no job ever rescores old values.
The stored values grow with time; before they overflow a double (2 ** 1023) the store moves
the landmark forward and scales everything by the same factor, which keeps all rankings.
"""

from __future__ import annotations

import math

# Move the landmark when an exponent passes this many half-lives: 2 ** 256 ~ 1e77 leaves a
# wide margin below overflow for sums of many such values.
MAX_EXPONENT = 256.0


class ForwardDecay:
    __slots__ = ("half_life", "landmark")

    def __init__(self, half_life_s: float, landmark: float) -> None:
        self.half_life = half_life_s
        self.landmark = landmark

    def weight(self, w: float, ts: float) -> float:
        return w * math.exp2((ts - self.landmark) / self.half_life)

    def exponent(self, ts: float) -> float:
        return (ts - self.landmark) / self.half_life

    def value_at(self, stored: float, now: float) -> float:
        """The decayed value at ``now`` of a stored sum (for display; ranking needs none)."""
        return stored * math.exp2((self.landmark - now) / self.half_life)

    def rescale_factor(self, new_landmark: float) -> float:
        """Factor that turns values stored against this landmark into ``new_landmark``'s."""
        return math.exp2((self.landmark - new_landmark) / self.half_life)
