"""Online experiments: which variant serves a subject, the ids that name a recommendation,
what the processor attributes to it, and the comparison of variants from their counts.

Assignment is a stable hash, so every api replica puts a subject in the same variant
without sharing any state: a subject's point in [0, 1) picks the experiment's slice (each
experiment takes ``traffic`` of the subjects, in the order they are configured), and a
second hash, salted with the experiment's name, picks the variant by the variants' weights.
Changing an experiment's traffic or weights moves subjects between variants: start a new
experiment (a new name) rather than edit a running one.

Attribution runs in the processor, in the order of the event log: the api writes an
impression record (``IMPRESSION_TYPE``) for every recommendation it serves in an experiment,
keyed by the user like the user's events, so one processor sees a user's impressions and
events in order. An event is attributed to a recommendation when it names its id, or, for
the same user, when its item was shown within the experiment's attribution window before
it (the most recent such recommendation). Each (event type, item) counts once per
recommendation. The counts live in the feature store, written with the batch's offsets, so
a replay counts nothing twice.
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from statistics import NormalDist
from typing import Any

from reco.events import Event, new_event_ids
from reco.settings import (
    EXPERIMENT_NAME_PATTERN,
    IMPRESSION_TYPE,
    EngineSettings,
    Experiment,
    Variant,
)
from reco.signals import FeatureDelta, UserProfile

IMPRESSIONS = "impressions"
"""The count of recommendations served, next to the event types attributed to them."""

MAX_SHOWN = 20
"""Recommendations remembered per user for attribution by item and window."""

_NAME = re.compile(EXPERIMENT_NAME_PATTERN)
_HASH_SCALE = 2.0**-64
_Z95 = NormalDist().inv_cdf(0.975)


def _unit(*parts: str) -> float:
    """A point of [0, 1) that depends only on ``parts``: the same in every process."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * _HASH_SCALE


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: Experiment
    variant: Variant


class Experiments:
    """The configured experiments: assignment of subjects, and what ids and records name."""

    def __init__(self, experiments: Sequence[Experiment]) -> None:
        self.all = list(experiments)
        self._ends = list(accumulate(e.traffic for e in self.all))
        self._cumulative = [list(accumulate(v.weight for v in e.variants)) for e in self.all]
        self._variants = {(e.name, v.name) for e in self.all for v in e.variants}
        self._windows = {e.name: e.attribution_window_s for e in self.all}

    def __bool__(self) -> bool:
        return bool(self.all)

    def assign(self, subject: str) -> Assignment | None:
        """The experiment and variant serving ``subject`` (a user id, else a session id),
        or ``None`` when the subject is in no experiment's slice."""
        if not self.all:
            return None
        point = _unit("reco-experiments", subject)
        index = bisect_right(self._ends, point)
        if index >= len(self.all):
            return None
        experiment, cumulative = self.all[index], self._cumulative[index]
        at = _unit(experiment.name, subject) * cumulative[-1]
        chosen = min(bisect_right(cumulative, at), len(cumulative) - 1)
        return Assignment(experiment, experiment.variants[chosen])

    def known(self, experiment: str, variant: str) -> bool:
        return (experiment, variant) in self._variants

    def window_s(self, experiment: str) -> float:
        return self._windows[experiment]


def recommendation_id(assignment: Assignment | None) -> str:
    """A new recommendation's id: ``<experiment>.<variant>.<32 hex digits>`` in an
    experiment (so that an event naming it is attributed without a lookup), else the hex
    digits alone."""
    random = new_event_ids(1)[0]
    if assignment is None:
        return random
    return f"{assignment.experiment.name}.{assignment.variant.name}.{random}"


def parse_recommendation_id(value: str) -> tuple[str, str] | None:
    """``(experiment, variant)`` an id names, or ``None`` for an id of no experiment."""
    parts = value.split(".")
    if len(parts) != 3 or not (_NAME.fullmatch(parts[0]) and _NAME.fullmatch(parts[1])):
        return None
    return parts[0], parts[1]


def impression(
    rec_id: str,
    assignment: Assignment,
    *,
    user_id: str | None,
    session_id: str | None,
    items: Sequence[str],
    now: float,
) -> Event:
    """The log record of one recommendation served in an experiment. It is keyed by the
    user when the request named one (the user's events follow it on the same partition),
    else by the session; its event id is the recommendation's id."""
    subject = user_id if user_id is not None else session_id
    if subject is None:
        raise ValueError("an impression needs a user or a session")
    return Event(
        event_id=rec_id,
        user_id=subject,
        item_id="",
        type=IMPRESSION_TYPE,
        timestamp=now,
        received_at=now,
        session_id=session_id,
        properties={
            "experiment": assignment.experiment.name,
            "variant": assignment.variant.name,
            "items": list(items),
            "by": "user" if user_id is not None else "session",
        },
    )


def is_user_impression(event: Event) -> bool:
    """An impression of a request by user: the processor keeps it in the user's profile."""
    return event.type == IMPRESSION_TYPE and event.properties.get("by") == "user"


def counter_key(experiment: str, variant: str, kind: str) -> str:
    return f"{experiment}/{variant}/{kind}"


class Attribution:
    """The processor's side: impressions and attributed events counted into a batch's delta.

    ``UserProfile.shown`` holds a user's recent recommendations, most recent first, as
    ``[id, experiment, variant, time, items, counted]`` where ``counted`` lists the
    ``type:item`` already attributed to it.
    """

    def __init__(self, experiments: Experiments) -> None:
        self._experiments = experiments

    def impression(self, delta: FeatureDelta, event: Event, profile: UserProfile | None) -> None:
        props = event.properties
        experiment, variant = str(props.get("experiment")), str(props.get("variant"))
        if not self._experiments.known(experiment, variant):
            return  # an experiment since ended or renamed: its records count nowhere
        delta.experiments[counter_key(experiment, variant, IMPRESSIONS)] += 1
        if profile is None:
            return
        items = [str(i) for i in props.get("items") or ()]
        profile.shown.insert(0, [event.event_id, experiment, variant, event.timestamp, items, []])
        self._trim(profile, event.timestamp)
        delta.profiles[profile.user_id] = profile

    def interaction(self, delta: FeatureDelta, event: Event, profile: UserProfile) -> None:
        """Attribute ``event`` (not an impression) to the recommendation it came from, if any."""
        entry = self._source(event, profile)
        if entry is None:
            if event.recommendation_id is None:
                return
            named = parse_recommendation_id(event.recommendation_id)
            # A recommendation the profile no longer holds (a session's request, or one
            # older than MAX_SHOWN): counted on the client's word, without the once-per-
            # item check.
            if named is not None and self._experiments.known(*named):
                delta.experiments[counter_key(*named, event.type)] += 1
            return
        counted = f"{event.type}:{event.item_id}"
        if counted in entry[5]:
            return
        entry[5].append(counted)
        delta.experiments[counter_key(entry[1], entry[2], event.type)] += 1
        delta.profiles[profile.user_id] = profile

    def _source(self, event: Event, profile: UserProfile) -> list[Any] | None:
        if event.recommendation_id is not None:
            for entry in profile.shown:
                if entry[0] == event.recommendation_id:
                    return entry
            return None
        for entry in profile.shown:
            experiment, shown_at = entry[1], entry[3]
            if shown_at > event.timestamp:
                continue
            if not self._experiments.known(experiment, entry[2]):
                continue
            if event.timestamp - shown_at > self._experiments.window_s(experiment):
                continue
            if event.item_id in entry[4]:
                return entry
        return None

    def _trim(self, profile: UserProfile, now: float) -> None:
        longest = max((e.attribution_window_s for e in self._experiments.all), default=0.0)
        profile.shown[:] = [e for e in profile.shown[:MAX_SHOWN] if now - e[3] <= longest]


# -- the comparison -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """Events per impression with a 95 % interval."""

    count: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Lift:
    """A variant's rate minus control's, with a 95 % interval, and the relative change;
    no interval (``None``) while either has no impression."""

    difference: float
    low: float | None
    high: float | None
    relative: float | None

    @property
    def verdict(self) -> str:
        if self.low is None or self.high is None:
            return "no impressions yet"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no difference yet"


@dataclass(frozen=True, slots=True)
class VariantReport:
    name: str
    impressions: int
    rates: dict[str, Rate]
    lifts: dict[str, Lift] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    name: str
    variants: list[VariantReport]
    kinds: list[str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentReport:
        """What ``to_dict`` wrote (``GET /experiments``), for ``reco ab report --url``."""
        variants = [
            VariantReport(
                v["name"],
                int(v["impressions"]),
                {
                    kind: Rate(
                        int(e["count"]), e["per_impression"], e["interval"][0], e["interval"][1]
                    )
                    for kind, e in v["events"].items()
                },
                {
                    kind: Lift(e["difference"], e["interval"][0], e["interval"][1], e["relative"])
                    for kind, e in v["vs_control"].items()
                },
            )
            for v in data["variants"]
        ]
        kinds = list(variants[0].rates) if variants else []
        return cls(str(data["name"]), variants, kinds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "control": self.variants[0].name if self.variants else None,
            "variants": [
                {
                    "name": v.name,
                    "impressions": v.impressions,
                    "events": {
                        kind: {
                            "count": r.count,
                            "per_impression": r.rate,
                            "interval": [r.low, r.high],
                        }
                        for kind, r in v.rates.items()
                    },
                    "vs_control": {
                        kind: {
                            "difference": lift.difference,
                            "interval": [lift.low, lift.high],
                            "relative": lift.relative,
                            "verdict": lift.verdict,
                        }
                        for kind, lift in v.lifts.items()
                    },
                }
                for v in self.variants
            ],
        }


def _rate(count: int, impressions: int) -> Rate:
    """Events per impression, the interval of a Poisson count over the impressions (a
    normal approximation; at zero events, the rule of three's upper bound)."""
    if impressions <= 0:
        return Rate(count, 0.0, 0.0, 0.0)
    rate = count / impressions
    if count == 0:
        return Rate(0, 0.0, 0.0, 3.0 / impressions)
    half = _Z95 * math.sqrt(count) / impressions
    return Rate(count, rate, max(0.0, rate - half), rate + half)


def _lift(variant: Rate, n: int, control: Rate, m: int) -> Lift:
    difference = variant.rate - control.rate
    relative = difference / control.rate if control.rate > 0 else None
    if not (n and m):
        return Lift(difference, None, None, relative)
    half = _Z95 * math.sqrt(variant.count / n**2 + control.count / m**2)
    return Lift(difference, difference - half, difference + half, relative)


def report(
    counts: Mapping[str, int], experiments: Iterable[Experiment], kinds: Sequence[str]
) -> list[ExperimentReport]:
    """Each configured experiment's variants (control first) with their rates per
    impression and their difference to control, from the store's counters.

    The intervals treat impressions as independent, which they are not quite: a user sees
    several, and those of one user resemble each other. With many users per variant the
    difference is small; with few heavy users the intervals are too narrow.
    """
    out = []
    for experiment in experiments:
        variants = []
        for variant in experiment.variants:
            n = int(counts.get(counter_key(experiment.name, variant.name, IMPRESSIONS), 0))
            rates = {
                kind: _rate(int(counts.get(counter_key(experiment.name, variant.name, kind), 0)), n)
                for kind in kinds
            }
            variants.append(VariantReport(variant.name, n, rates))
        control = variants[0]
        for v in variants[1:]:
            for kind in kinds:
                v.lifts[kind] = _lift(
                    v.rates[kind], v.impressions, control.rates[kind], control.impressions
                )
        out.append(ExperimentReport(experiment.name, variants, list(kinds)))
    return out


def compare(counts: Mapping[str, int], settings: EngineSettings) -> list[ExperimentReport]:
    """``report`` of the settings' experiments, the event types in the order of their
    weight (views first, purchases last)."""
    weights = settings.event_weights
    kinds = sorted(weights, key=lambda t: (weights[t], t))
    return report(counts, settings.experiments, kinds)


def format_report(reports: Sequence[ExperimentReport]) -> str:
    """The comparison as a person reads it: one table per experiment."""
    if not reports:
        return "no experiment is configured (RECO_EXPERIMENTS, spec.experiments)\n"
    lines: list[str] = []
    for rep in reports:
        control = rep.variants[0].name
        lines.append(f"experiment {rep.name} (control: {control})")
        # The event types no variant earned say nothing: left out.
        kinds = [k for k in rep.kinds if any(v.rates[k].count for v in rep.variants)]
        header = ["variant", IMPRESSIONS] + [f"{k}/impression [95% interval]" for k in kinds]
        rows = [header]
        for v in rep.variants:
            row = [v.name, str(v.impressions)]
            for kind in kinds:
                r = v.rates[kind]
                row.append(f"{r.rate:.4f} [{r.low:.4f}, {r.high:.4f}] ({r.count})")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for row in rows:
            cells = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            lines.append(("  " + cells).rstrip())
        if not kinds:
            lines.append("  no event attributed yet")
        for v in rep.variants[1:]:
            for kind in kinds:
                lift = v.lifts[kind]
                if lift.low is None or lift.high is None:
                    lines.append(f"  {v.name} vs {control}, {kind}: {lift.verdict}")
                    continue
                relative = f", {lift.relative:+.1%}" if lift.relative is not None else ""
                lines.append(
                    f"  {v.name} vs {control}, {kind}: {lift.difference:+.4f} "
                    f"[{lift.low:+.4f}, {lift.high:+.4f}]{relative}: {lift.verdict}"
                )
        lines.append("")
    return "\n".join(lines)
