"""The next protocol's purchase target: which predictions are made, and that no system sees
the purchase (or anything after it) before it ranks."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from reco.cli import main
from reco.evaluation import EvalConfig, purchase, run
from reco.evaluation.baselines import BASELINES, SessionPop
from reco.evaluation.engine import EngineSystem
from reco.evaluation.metrics import Position, Ranking, Rest, Scoreboard
from reco.evaluation.purchase import PurchaseData, purchase_data, run_purchase, split_by_time
from reco.evaluation.systems import System
from reco.events import Event
from reco.settings import EngineSettings

pytestmark = pytest.mark.unit


def ev(name: str, user: str, item: str, kind: str, ts: float, session: str) -> Event:
    return Event(name, user, item, kind, ts, ts, session, {"category": "c"})


TRAIN = [
    ev("a1", "u1", "a", "view", 0, "s1"),
    ev("a2", "u1", "b", "cart", 10, "s1"),
    ev("a3", "u2", "a", "view", 20, "s2"),
    ev("a4", "u2", "c", "purchase", 30, "s2"),
]
TEST = [
    ev("b1", "u1", "c", "view", 100, "s1"),  # s1 began in training and goes on
    ev("b2", "u2", "b", "view", 105, "s3"),
    ev("b3", "u1", "b", "purchase", 110, "s1"),
    ev("b8", "u3", "a", "view", 112, "s5"),  # a unit without a purchase
    ev("b4", "u2", "d", "view", 115, "s3"),
    ev("b5", "u1", "e", "purchase", 120, "s4"),  # opens its session; e is a new item
    ev("b6", "u2", "b", "purchase", 125, "s3"),
    ev("b7", "u2", "d", "view", 130, "s3"),  # after the unit's last purchase
]


class Spy:
    """Wraps a system; records every delivery and, at each ranking, what had been delivered."""

    def __init__(self, inner: System | None = None) -> None:
        self.inner = inner
        self.name = inner.name if inner else "spy"
        self.fitted: list[Event] = []
        self.delivered: list[Event] = []
        self.asked: list[tuple[str | None, str | None, list[str]]] = []
        self.live: list[Event] = []
        """Delivered since the last ``end_session``: in static mode, the unit's own prefix."""
        self.live_at_ask: list[list[Event]] = []
        self.rankings: list[Ranking] = []

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        self.fitted = list(train)
        if self.inner:
            self.inner.fit(train, online=online)

    def observe(self, event: Event) -> None:
        self.delivered.append(event)
        self.live.append(event)
        if self.inner:
            self.inner.observe(event)

    def rank(
        self, *, session_id: str | None, user_id: str | None, n: int, exclude: frozenset[str]
    ) -> Ranking:
        self.asked.append((session_id, user_id, [e.event_id for e in self.delivered]))
        self.live_at_ask.append(list(self.live))
        if self.inner:
            ranking = self.inner.rank(session_id=session_id, user_id=user_id, n=n, exclude=exclude)
        else:  # an oracle of the past: the asking user's latest delivered item first
            mine = [e.item_id for e in self.delivered if e.user_id == user_id]
            ranking = Ranking((mine[-1],), (1.0,), Rest.BELOW) if mine else Ranking((), ())
        self.rankings.append(ranking)
        return ranking

    def end_session(self, session_id: str) -> None:
        self.live = []
        if self.inner:
            self.inner.end_session(session_id)


# What was delivered before each ranking, per unit and mode (the purchases are b3, b5, b6).
STATIC_SESSION = [
    ("s1", "u1", ["b1"]),
    ("s3", "u2", ["b1", "b3", "b2", "b4"]),
    ("s4", "u1", ["b1", "b3", "b2", "b4", "b6", "b7"]),  # s5 has no purchase: skipped
]
STATIC_USER = [
    (None, "u1", ["b1"]),
    (None, "u1", ["b1", "b3"]),
    (None, "u2", ["b1", "b3", "b5", "b2", "b4"]),
]
ONLINE_SESSION = [  # every unit's events in time order, whatever the unit
    ("s1", "u1", ["b1", "b2"]),
    ("s4", "u1", ["b1", "b2", "b3", "b8", "b4"]),
    ("s3", "u2", ["b1", "b2", "b3", "b8", "b4", "b5"]),
]


def test_split_by_time_continues_a_session_across_the_cut_off() -> None:
    events = [*TRAIN, *TEST]
    train, test = split_by_time(events, days=50 / 86400)  # cut-off at t = 80
    assert [e.event_id for e in train] == ["a1", "a2", "a3", "a4"]
    assert [e.event_id for e in test] == [e.event_id for e in TEST]
    assert split_by_time([], 1.0) == ([], [])


def test_units_catalogue_and_counts() -> None:
    data = purchase_data(TRAIN, TEST, "session")
    assert [[e.event_id for e in u] for u in data.units] == [
        ["b1", "b3"],
        ["b2", "b4", "b6", "b7"],
        ["b8"],
        ["b5"],
    ]
    assert data.predictions == 3
    assert data.catalogue == {"a", "b", "c", "d", "e"}  # e occurs only in the test part
    assert data.counts == {
        "train_events": 4,
        "test_events": 8,
        "test_units": 4,
        "test_units_with_purchase": 3,
        "purchases": 3,
        "item_in_train": 2,  # b twice; e is new
        "item_seen_by_user_before": 2,  # u1 carted b in training; u2 viewed b at b2
        "first_in_session": 1,  # b5
    }
    users = purchase_data(TRAIN, TEST, "user")
    assert [u[0].user_id for u in users.units] == ["u1", "u2", "u3"]


@pytest.mark.parametrize(
    ("unit", "online", "expected"),
    [
        ("session", False, STATIC_SESSION),
        ("user", False, STATIC_USER),
        ("session", True, ONLINE_SESSION),
        ("user", True, [(None, u, seen) for _, u, seen in ONLINE_SESSION]),
    ],
)
def test_one_ranking_before_each_purchase_after_exactly_what_precedes_it(
    unit: purchase.Unit, online: bool, expected: list[tuple[str | None, str, list[str]]]
) -> None:
    spy = Spy()
    outcome = run_purchase(spy, purchase_data(TRAIN, TEST, unit), online=online, kmax=5)
    assert spy.asked == expected
    assert [e.event_id for e in spy.fitted] == ["a1", "a2", "a3", "a4"]
    assert outcome.board.predictions == 3
    assert outcome.board.sessions == (2 if unit == "user" else 3)  # bootstrap units


def assert_no_look_ahead(spy: Spy, data: PurchaseData, *, online: bool) -> None:
    """Before each purchase is ranked it was never delivered, no training event is later,
    and what the system may hold is earlier: online, every delivered event; static, the
    unit's own prefix (earlier units ended with ``end_session``, see the test below)."""
    purchases = [e for u in data.units for e in u if e.type == purchase.PURCHASE]
    if online:
        purchases.sort(key=lambda e: e.timestamp)
    position = {e.event_id: i for i, e in enumerate(e for u in data.units for e in u)}
    assert len(spy.asked) == len(purchases)
    asked = zip(purchases, spy.asked, spy.live_at_ask, strict=True)
    for target, (_, user, delivered), live in asked:
        assert user == target.user_id
        assert target.event_id not in delivered
        assert all(e.timestamp < target.timestamp for e in spy.fitted)
        held = [e for e in spy.delivered if e.event_id in delivered] if online else live
        for seen in held:
            assert seen.timestamp <= target.timestamp
            if not online:
                assert position[seen.event_id] < position[target.event_id]


@pytest.mark.parametrize("name", ["engine", *BASELINES])
@pytest.mark.parametrize("online", [False, True])
@pytest.mark.parametrize("unit", ["session", "user"])
def test_no_system_sees_the_purchase_before_ranking_it(
    name: str, online: bool, unit: purchase.Unit
) -> None:
    inner = EngineSystem(EngineSettings()) if name == "engine" else BASELINES[name]()
    spy = Spy(inner)
    data = purchase_data(TRAIN, TEST, unit)
    outcome = run_purchase(spy, data, online=online, kmax=5)
    assert_no_look_ahead(spy, data, online=online)
    assert outcome.board.predictions == 3


@pytest.mark.parametrize("name", ["engine", *BASELINES])
@pytest.mark.parametrize("unit", ["session", "user"])
def test_static_units_do_not_see_the_units_replayed_before(name: str, unit: purchase.Unit) -> None:
    """Each unit ranks as it would if it were replayed alone over the frozen model."""

    def make() -> System:
        return EngineSystem(EngineSettings()) if name == "engine" else BASELINES[name]()

    data = purchase_data(TRAIN, TEST, unit)
    together = Spy(make())
    run_purchase(together, data, online=False, kmax=5)
    alone = []
    for events in data.units:
        spy = Spy(make())
        run_purchase(spy, replace(data, units=[events]), online=False, kmax=5)
        alone += spy.rankings
    assert together.rankings == alone


def test_the_check_catches_a_harness_that_delivers_the_purchase_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = purchase._deliveries

    def leaky(units: list[list[Event]], *, online: bool) -> Iterator[tuple[int, int, Event]]:
        for index, step, event in real(units, online=online):
            if event.type == purchase.PURCHASE:  # the purchase, disguised as a view, first
                yield index, step, replace(event, type="view")
            yield index, step, event

    data = purchase_data(TRAIN, TEST, "user")
    honest = Spy()
    assert run_purchase(honest, data, online=False, kmax=5).board.value("HR", 1) == 0.0
    assert_no_look_ahead(honest, data, online=False)
    monkeypatch.setattr(purchase, "_deliveries", leaky)
    leaked = Spy()
    assert run_purchase(leaked, data, online=False, kmax=5).board.value("HR", 1) == 1.0
    with pytest.raises(AssertionError):
        assert_no_look_ahead(leaked, data, online=False)


def test_a_session_begun_in_training_goes_on_in_the_replay() -> None:
    for system in (EngineSystem(EngineSettings()), SessionPop()):
        system.fit(TRAIN, online=False)
        system.observe(TEST[0])  # s1: a, b (training), then c
        ranking = system.rank(session_id="s1", user_id="u1", n=3, exclude=frozenset())
        assert {"a", "b", "c"} <= set(ranking.items[:3])


def test_user_unit_ranks_from_the_users_whole_history() -> None:
    baseline = SessionPop()
    baseline.fit(TRAIN, online=False)
    baseline.observe(TEST[0])
    ranking = baseline.rank(session_id=None, user_id="u1", n=3, exclude=frozenset())
    assert set(ranking.items[:3]) == {"a", "b", "c"}


def write_events(path: Path) -> Path:
    lines = ["user_id,item_id,type,timestamp,session_id"]
    lines += [f"{e.user_id},{e.item_id},{e.type},{e.timestamp},{e.session_id}" for e in TRAIN]
    lines += [f"{e.user_id},{e.item_id},{e.type},{e.timestamp},{e.session_id}" for e in TEST]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reco_eval_purchase_target(tmp_path: Path) -> None:
    data = write_events(tmp_path / "events.csv")
    config = EvalConfig(
        train=data, fmt="csv", split_days=50 / 86400, k=5, baselines=("pop",),
        target="purchase", unit="user", progress=False, resamples=50,
    )  # fmt: skip
    result = run(config)
    assert (result["target"], result["unit"], result["mode"]) == ("purchase", "user", "static")
    assert result["prediction_events"] == 3
    assert result["events"] == {"read": 12, "train": 4, "test": 8}
    assert result["counts"]["first_in_session"] == 1
    assert set(result["systems"]) == {"engine", "pop"}
    assert result["systems"]["engine"]["prediction_events"] == 3


def test_reco_eval_cli_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_events(tmp_path / "events.csv")
    args = ["eval", "--train", str(data), "--format", "csv", "--split-days", str(50 / 86400)]
    flags = ["--target", "purchase", "--unit", "session", "--mode", "online", "--json"]
    assert main([*args, *flags, "--baselines", "none", "--k", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["target"], result["unit"], result["mode"]) == ("purchase", "session", "online")
    assert result["prediction_events"] == 3
    assert main([*args, "--unit", "user"]) == 2
    assert "--unit applies to --target purchase only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"unit": "user"}, "--unit applies to --target purchase only"),
        ({"target": "purchase", "protocol": "user"}, "belongs to the next protocol"),
    ],
)
def test_reco_eval_refuses_a_unit_without_the_purchase_target(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    config = EvalConfig(train=write_events(tmp_path / "events.csv"), fmt="csv", split_days=1.0)
    with pytest.raises(ValueError, match=message):
        run(replace(config, **change))  # type: ignore[arg-type]


# -- comparing two settings on the same predictions ---------------------------------------


def test_paired_intervals_cancel_what_two_runs_share() -> None:
    a, b = Scoreboard(5), Scoreboard(5)
    for session in range(40):  # b hits where a does, and in every tenth session too
        hit, miss = Position(0, 1), Position(9, 1)
        a.add(session, hit if session % 2 else miss)
        b.add(session, hit if session % 2 or session % 10 == 0 else miss)
    ((low, high),) = b.paired_intervals(a, [("HR", 1)], resamples=500)
    assert 0.0 <= low < 0.1 < high  # b - a = 4 / 40, never below 0
    ((alone_low, alone_high),) = b.intervals([("HR", 1)], resamples=500)
    assert alone_high - alone_low > 1.5 * (high - low)
    assert b.paired_intervals(b, [("HR", 1)], resamples=50) == [(0.0, 0.0)]
    with pytest.raises(ValueError, match="same sessions"):
        b.paired_intervals(Scoreboard(5), [("HR", 1)])
