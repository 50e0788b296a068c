"""How the feature stores keep their capped lists, shared so that both trim alike."""

from typing import Final

# A capped list is trimmed to its cap once it is this much over it: trimming at every update
# would cost a sort (memory) or a ZREMRANGEBYRANK (Redis) per event on the hottest items.
# Both stores use the same slack, so they hold the same values (a value trimmed away
# restarts from zero) and the contract suite can compare them.
TRIM_SLACK: Final = 1.25
