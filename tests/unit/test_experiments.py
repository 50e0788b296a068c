"""Experiments: assignment by a stable hash, recommendation ids, attribution in the
processor's fold, the comparison's arithmetic, and the settings' checks."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pydantic import ValidationError

from reco.events import Event
from reco.experiments import (
    Attribution,
    ExperimentReport,
    Experiments,
    format_report,
    impression,
    parse_recommendation_id,
    recommendation_id,
    report,
)
from reco.settings import EngineSettings, Experiment, SignalWeights
from reco.signals import FeatureDelta, UserProfile

pytestmark = pytest.mark.unit


def _experiment(name: str = "ab", traffic: float = 1.0, window: float = 600.0, **weights: float):
    variants = [{"name": v, "weight": w} for v, w in (weights or {"a": 1, "b": 1}).items()]
    return Experiment.model_validate(
        {"name": name, "traffic": traffic, "attributionWindowSeconds": window, "variants": variants}
    )


def test_assignment_is_stable_and_follows_the_weights() -> None:
    experiments = Experiments([_experiment(control=1, engine=3)])
    again = Experiments([_experiment(control=1, engine=3)])
    shares = Counter()
    for n in range(20_000):
        chosen = experiments.assign(f"user-{n}")
        assert chosen is not None
        assert again.assign(f"user-{n}") == chosen, "every replica assigns alike"
        shares[chosen.variant.name] += 1
    # 20 000 draws of p = .75: one standard deviation is .003.
    assert abs(shares["engine"] / 20_000 - 0.75) < 0.015


def test_experiments_take_disjoint_slices_of_the_subjects() -> None:
    experiments = Experiments([_experiment("one", traffic=0.2), _experiment("two", traffic=0.3)])
    seen = Counter()
    for n in range(20_000):
        chosen = experiments.assign(f"s{n}")
        seen[chosen.experiment.name if chosen else None] += 1
    assert abs(seen["one"] / 20_000 - 0.2) < 0.015
    assert abs(seen["two"] / 20_000 - 0.3) < 0.015
    assert abs(seen[None] / 20_000 - 0.5) < 0.015
    assert Experiments([]).assign("anyone") is None


def test_recommendation_ids_name_their_variant() -> None:
    chosen = Experiments([_experiment()]).assign("u1")
    assert chosen is not None
    rec = recommendation_id(chosen)
    assert parse_recommendation_id(rec) == ("ab", chosen.variant.name)
    assert rec != recommendation_id(chosen), "each response its own id"
    plain = recommendation_id(None)
    assert len(plain) == 32
    assert parse_recommendation_id(plain) is None
    assert parse_recommendation_id("ab.a") is None
    assert parse_recommendation_id("AB.a.x") is None


def _event(item: str, ts: float, kind: str = "click", rec: str | None = None) -> Event:
    return Event(f"e-{item}-{ts}-{kind}", "u1", item, kind, ts, ts, recommendation_id=rec)


class _Fold:
    """The processor's use of ``Attribution``, over one profile."""

    def __init__(self, *experiments: Experiment) -> None:
        self.experiments = Experiments(list(experiments))
        self.attribution = Attribution(self.experiments)
        self.profile = UserProfile("u1")
        self.delta = FeatureDelta(landmark=0.0)

    def shown(self, items: list[str], at: float, by_user: bool = True) -> str:
        chosen = self.experiments.assign("u1")
        assert chosen is not None
        rec = recommendation_id(chosen)
        record = impression(
            rec,
            chosen,
            user_id="u1" if by_user else None,
            session_id=None if by_user else "s1",
            items=items,
            now=at,
        )
        self.attribution.impression(self.delta, record, self.profile if by_user else None)
        return rec

    def then(self, event: Event) -> None:
        self.attribution.interaction(self.delta, event, self.profile)

    def counts(self) -> dict[str, int]:
        return dict(self.delta.experiments)


def test_events_on_shown_items_within_the_window_are_attributed_once() -> None:
    fold = _Fold(_experiment(window=600))
    variant = parse_recommendation_id(fold.shown(["x", "y"], at=1000.0))[1]  # type: ignore[index]
    fold.then(_event("x", 1010.0))  # by item and time
    fold.then(_event("x", 1020.0))  # the same click again: counted once
    fold.then(_event("x", 1030.0, "cart"))  # another type: counted
    fold.then(_event("z", 1040.0))  # not shown
    fold.then(_event("y", 1700.0))  # past the window
    fold.then(_event("y", 990.0))  # before the recommendation
    assert fold.counts() == {
        f"ab/{variant}/impressions": 1,
        f"ab/{variant}/click": 1,
        f"ab/{variant}/cart": 1,
    }


def test_an_event_naming_its_recommendation_is_attributed_to_it() -> None:
    fold = _Fold(_experiment(window=600))
    first = fold.shown(["x"], at=1000.0)
    second = fold.shown(["x"], at=1100.0)
    variant = parse_recommendation_id(first)[1]  # type: ignore[index]
    fold.then(_event("x", 5000.0, rec=first))  # named: the window does not apply
    fold.then(_event("x", 5001.0, rec=first))  # named again: once
    assert fold.counts()[f"ab/{variant}/click"] == 1
    assert [e[5] for e in fold.profile.shown] == [[], ["click:x"]], "the first one, not the last"
    assert second != first


def test_without_an_id_the_most_recent_recommendation_showing_the_item_wins() -> None:
    fold = _Fold(_experiment(window=600, a=1, b=1))
    fold.shown(["x"], at=1000.0)
    latest = fold.shown(["x", "y"], at=1100.0)
    fold.then(_event("x", 1150.0))
    assert fold.profile.shown[0][0] == latest
    assert fold.profile.shown[0][5] == ["click:x"]
    assert fold.profile.shown[1][5] == []


def test_a_sessions_recommendation_counts_by_its_id_only() -> None:
    fold = _Fold(_experiment())
    rec = fold.shown(["x"], at=1000.0, by_user=False)
    variant = parse_recommendation_id(rec)[1]  # type: ignore[index]
    assert fold.profile.shown == []
    fold.then(_event("x", 1001.0))  # no id: nothing to find it by
    fold.then(_event("x", 1002.0, rec=rec))
    assert fold.counts() == {f"ab/{variant}/impressions": 1, f"ab/{variant}/click": 1}


def test_records_of_an_experiment_no_longer_configured_count_nowhere() -> None:
    old = _Fold(_experiment("old"))
    rec = old.shown(["x"], at=1000.0)
    current = _Fold(_experiment("new"))
    current.attribution.impression(
        current.delta, impression(rec, old.experiments.assign("u1"), user_id="u1",  # type: ignore[arg-type]
                                  session_id=None, items=["x"], now=1000.0),
        current.profile,
    )  # fmt: skip
    current.then(_event("x", 1001.0, rec=rec))
    assert current.counts() == {}


def test_the_profile_keeps_recent_recommendations_only() -> None:
    fold = _Fold(_experiment(window=100))
    for n in range(30):
        fold.shown([f"i{n}"], at=1000.0 + n)
    assert len(fold.profile.shown) == 20
    fold.shown(["late"], at=5000.0)
    assert [e[4] for e in fold.profile.shown] == [["late"]], "older than the window: dropped"
    restored = UserProfile.from_dict(fold.profile.to_dict())
    assert restored.shown == fold.profile.shown


def test_report_rates_intervals_and_verdicts() -> None:
    experiment = _experiment(control=1, engine=1)
    counts = {
        "ab/control/impressions": 1000,
        "ab/control/click": 100,
        "ab/engine/impressions": 1000,
        "ab/engine/click": 200,
    }
    (rep,) = report(counts, [experiment], ["click", "purchase"])
    control, engine = rep.variants
    assert control.name == "control"
    assert control.impressions == 1000
    click = control.rates["click"]
    assert click.rate == pytest.approx(0.1)
    assert click.high - click.rate == pytest.approx(1.959964 * math.sqrt(100) / 1000, rel=1e-5)
    assert control.rates["purchase"].high == pytest.approx(3 / 1000), "rule of three at zero"
    lift = engine.lifts["click"]
    assert lift.difference == pytest.approx(0.1)
    assert lift.relative == pytest.approx(1.0)
    assert lift.low > 0
    assert lift.verdict == "better"
    assert engine.lifts["purchase"].verdict == "no difference yet"
    text = format_report([rep])
    assert "engine vs control, click: +0.1000" in text
    assert "better" in text
    assert format_report([]).startswith("no experiment is configured")


def test_settings_refuse_what_cannot_be_served() -> None:
    two = [{"name": "a"}, {"name": "b"}]
    with pytest.raises(ValidationError, match="at least 2"):
        EngineSettings(experiments=[{"name": "x", "variants": [{"name": "a"}]}])
    with pytest.raises(ValidationError, match="variant names must differ"):
        EngineSettings(experiments=[{"name": "x", "variants": [{"name": "a"}, {"name": "a"}]}])
    with pytest.raises(ValidationError, match=r"adds up to 1\.5"):
        EngineSettings(
            experiments=[
                {"name": "x", "traffic": 0.8, "variants": two},
                {"name": "y", "traffic": 0.7, "variants": two},
            ]
        )
    with pytest.raises(ValidationError, match="should match pattern"):
        EngineSettings(experiments=[{"name": "Has.Dots", "variants": two}])
    with pytest.raises(ValidationError, match="engine's own record"):
        EngineSettings(event_weights={"view": 1, "impression": 1})
    parsed = EngineSettings(
        experiments=[
            {
                "name": "x",
                "variants": [
                    {"name": "a"},
                    {"name": "b", "ranker": True, "settings": {"weights": {"sequence": 2}}},
                ],
            }
        ]
    )
    variant = parsed.experiments[0].variants[1]
    assert variant.ranker
    assert variant.settings.weights == SignalWeights(sequence=2)


def test_a_variants_weights_replace_only_those_it_names() -> None:
    served = EngineSettings(weights=SignalWeights(coview=0.5, recency=2), history_decay=0.7)
    variant = Experiment.model_validate(
        {
            "name": "x",
            "variants": [{"name": "a"}, {"name": "b", "settings": {"weights": {"sequence": 3}}}],
        }
    ).variants[1]
    applied = variant.settings.apply(served)
    assert applied.weights == SignalWeights(coview=0.5, recency=2, sequence=3)
    assert applied.history_decay == 0.7


def test_a_variant_without_impressions_has_no_comparison_yet() -> None:
    counts = {"ab/control/impressions": 0, "ab/engine/impressions": 3, "ab/engine/click": 1}
    (rep,) = report(counts, [_experiment(control=1, engine=1)], ["click"])
    lift = rep.variants[1].lifts["click"]
    assert lift.low is None
    assert lift.verdict == "no impressions yet"
    assert "engine vs control, click: no impressions yet" in format_report([rep])
    again = ExperimentReport.from_dict(rep.to_dict())
    assert again.variants[1].lifts["click"].verdict == "no impressions yet"
