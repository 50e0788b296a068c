"""The evaluation harness: tie-aware metrics, bootstrap, the replay's lack of look-ahead,
the protocols' data handling, static versus online learning, and each baseline."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from reco.cli import main
from reco.evaluation import protocols
from reco.evaluation.baselines import VSKNN, Baseline, Pop, Popularity, SequentialRules, SessionPop
from reco.evaluation.data import next_data, sessionize, split_by_days, user_data
from reco.evaluation.engine import EngineSystem
from reco.evaluation.frozen import FrozenFeatures
from reco.evaluation.metrics import (
    Position,
    Ranking,
    Rest,
    Scoreboard,
    hit_rate,
    locate,
    ndcg,
    quantile,
    reciprocal_rank,
)
from reco.evaluation.protocols import run_next, run_user
from reco.events import Event
from reco.settings import EngineSettings
from reco.signals import FeatureDelta, SessionState

pytestmark = pytest.mark.unit


def ev(session: str, item: str, ts: float, user: str | None = None) -> Event:
    return Event(f"{session}-{ts}", user or f"u{session}", item, "view", ts, ts, session)


def sessions_of(spec: dict[str, str], start: float = 0.0) -> list[Event]:
    """``{"s1": "abc"}`` → events of session s1 on items a, b, c, sessions one after another."""
    out = []
    ts = start
    for session, items in spec.items():
        for item in items:
            ts += 1.0
            out.append(ev(session, item, ts))
    return out


# -- metrics ------------------------------------------------------------------------------


def test_target_tied_with_two_others_at_rank_three() -> None:
    ranking = Ranking(("a", "b", "c", "d", "e", "f"), (5.0, 4.0, 3.0, 3.0, 3.0, 1.0))
    p = locate(ranking, "d", universe=6, kmax=20)
    assert p == Position(higher=2, tied=3)
    assert hit_rate(p, 1) == 0.0
    assert hit_rate(p, 2) == 0.0
    assert hit_rate(p, 3) == pytest.approx(1 / 3)
    assert hit_rate(p, 4) == pytest.approx(2 / 3)
    assert hit_rate(p, 5) == 1.0
    assert reciprocal_rank(p, 3) == pytest.approx((1 / 3) / 3)
    assert reciprocal_rank(p, 20) == pytest.approx((1 / 3 + 1 / 4 + 1 / 5) / 3)
    assert ndcg(p, 20) == pytest.approx(sum(1 / math.log2(r + 1) for r in (3, 4, 5)) / 3)


def test_untied_target_has_exact_metrics() -> None:
    p = locate(Ranking(("a", "b", "c"), (3.0, 2.0, 1.0)), "b", universe=3, kmax=20)
    assert (hit_rate(p, 1), hit_rate(p, 2), reciprocal_rank(p, 20)) == (0.0, 1.0, 0.5)


def test_unlisted_candidates_tied_at_the_last_score() -> None:
    # The engine pads with score-0 items; every item it did not list scores 0 as well.
    ranking = Ranking(("a", "b", "c"), (2.0, 1.0, 0.0), Rest.TIED)
    p = locate(ranking, "z", universe=10, kmax=20)
    assert p == Position(higher=2, tied=8)
    assert hit_rate(p, 3) == pytest.approx(1 / 8)
    assert locate(ranking, "c", universe=10, kmax=20) == p


def test_unlisted_candidates_below_and_truncated_lists() -> None:
    below = Ranking(("a", "b"), (2.0, 1.0), Rest.BELOW)
    assert locate(below, "z", universe=5, kmax=1) == Position(2, 3)
    cut = Ranking(("a", "b", "c"), (2.0, 1.0, 1.0), Rest.TRUNCATED)
    # The group of b and c may go on past the list: flagged when it starts within kmax.
    assert locate(cut, "c", universe=9, kmax=20).open
    assert not locate(cut, "c", universe=9, kmax=1).open
    assert not locate(cut, "a", universe=9, kmax=20).open
    assert locate(cut, "z", universe=9, kmax=20).open


def test_scoreboard_micro_averages_over_predictions_not_sessions() -> None:
    board = Scoreboard(kmax=3)
    board.add(0, Position(0, 1))  # rank 1
    board.add(0, Position(5, 1))  # miss
    board.add(1, Position(1, 1))  # rank 2
    assert board.predictions == 3
    assert board.sessions == 2
    assert board.value("HR", 1) == pytest.approx(1 / 3)
    assert board.value("HR", 3) == pytest.approx(2 / 3)
    assert board.value("MRR", 3) == pytest.approx((1 + 0.5) / 3)
    assert board.curve("HR") == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_bootstrap_is_deterministic_per_seed_and_holds_the_estimate() -> None:
    board = Scoreboard(kmax=5)
    for session in range(60):
        for step in range(1 + session % 4):
            board.add(session, Position((session * 7 + step) % 9, 1 + step % 2))
    wanted = [("HR", 5), ("MRR", 5)]
    first = board.intervals(wanted, resamples=2000, seed=7)
    assert first == board.intervals(wanted, resamples=2000, seed=7)
    assert first != board.intervals(wanted, resamples=2000, seed=8)
    for (metric, k), (low, high) in zip(wanted, first, strict=True):
        assert low < board.value(metric, k) < high


def test_quantile_interpolates_linearly() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0
    assert quantile([5.0], 0.975) == 5.0


# -- data ---------------------------------------------------------------------------------


def test_catalogue_filter_then_sessions_shorter_than_two_go() -> None:
    train = sessions_of({"t1": "abc", "t2": "cd"})
    test = sessions_of({"s1": "axb", "s2": "ax", "s3": "aa", "s4": "xy"}, start=100)
    data = next_data(train, test)
    assert data.catalogue == frozenset("abcd")
    kept = ["".join(e.item_id for e in s) for s in data.sessions]
    assert kept == ["ab", "aa"]  # x removed from s1; s2 left with one event; repeats stay
    assert data.predictions == 2
    assert data.counts["test_events_unknown_item"] == 4
    assert data.counts["test_sessions_removed"] == 2
    assert data.counts["test_events_kept"] == 4


def test_split_by_days_keeps_sessions_whole() -> None:
    day = 86400.0
    events = [ev("old", "a", 0.0), ev("old", "b", 9 * day), ev("new", "c", 9.5 * day)]
    events += [ev("early", "d", 1 * day), ev("late", "e", 9.9 * day)]
    train, test = split_by_days(events, 1.0)
    assert {e.session_id for e in test} == {"old", "new", "late"}
    assert {e.session_id for e in train} == {"early"}


def test_sessionize_uses_the_engines_gap_rule() -> None:
    raw = [Event(f"e{i}", "u", "a", "view", ts, ts) for i, ts in enumerate([0, 100, 5000])]
    assert [e.session_id for e in sessionize(raw, 1800.0)] == ["u#1", "u#1", "u#2"]


def test_user_split_holds_out_each_users_last_event() -> None:
    events = [
        Event("1", "u1", "a", "view", 1, 1),
        Event("2", "u2", "a", "view", 2, 2),
        Event("3", "u1", "b", "view", 3, 3),
        Event("4", "u2", "z", "view", 4, 4),  # z never trained: u2 is dropped
        Event("5", "u1", "c", "view", 5, 5),
        Event("6", "u3", "c", "view", 6, 6),
        Event("7", "u3", "b", "view", 7, 7),
    ]
    data = user_data(events)
    assert [(e.user_id, e.item_id) for e in data.targets] == [("u1", "c"), ("u3", "b")]
    assert data.rated["u1"] == {"a", "b"}
    assert data.catalogue == {"a", "b", "c"}
    assert data.universe("u1") == 1
    assert data.counts["users_target_not_in_training"] == 1


# -- no look-ahead -----------------------------------------------------------------------


class Recorder:
    """Remembers what it was given; answers with the last item of the asking session."""

    name = "recorder"

    def __init__(self) -> None:
        self.delivered: list[Event] = []
        self.asked: list[tuple[str, list[Event]]] = []

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        return None

    def observe(self, event: Event) -> None:
        self.delivered.append(event)

    def rank(
        self, *, session_id: str | None, user_id: str | None, n: int, exclude: frozenset[str]
    ) -> Ranking:
        assert session_id is not None
        self.asked.append((session_id, list(self.delivered)))
        mine = [e.item_id for e in self.delivered if e.session_id == session_id]
        return Ranking((mine[-1],), (1.0,), Rest.BELOW)

    def end_session(self, session_id: str) -> None:
        return None


TEST_SESSIONS = {"s1": "abba", "s2": "ccd", "s3": "dde", "s4": "ae"}
# Targets equal to the item just seen: s1 b→b; s2 c→c; s3 d→d. 3 of 8 predictions.
REPEATS = 3 / 8


def replay_data() -> protocols.NextData:
    """The test sessions overlap in time, so the online replay interleaves them."""
    train = sessions_of({"t1": "abcde"})
    test = [
        ev(session, item, 100.0 + 10 * step + index)
        for index, (session, items) in enumerate(TEST_SESSIONS.items())
        for step, item in enumerate(items)
    ]
    return next_data(train, test)


@pytest.mark.parametrize("online", [False, True])
def test_each_ranking_is_asked_after_exactly_the_prefix(online: bool) -> None:
    data = replay_data()
    system = Recorder()
    outcome = run_next(system, data, online=online, kmax=5)
    assert outcome.board.predictions == len(system.asked) == 8
    for session_id, seen in system.asked:
        index = int(session_id.split(":")[1])
        prefix = [e.item_id for e in seen if e.session_id == session_id]
        expected = [e.item_id for e in data.sessions[index]]
        assert prefix == expected[: len(prefix)]
        assert len(prefix) < len(expected)  # the target is never among what was delivered
        latest = data.sessions[index][len(prefix) - 1].timestamp
        if online:  # nothing from any session's future either
            assert max(e.timestamp for e in seen) <= latest


@pytest.mark.parametrize("online", [False, True])
def test_an_oracle_of_the_past_scores_only_the_repeat_rate(online: bool) -> None:
    outcome = run_next(Recorder(), replay_data(), online=online, kmax=5)
    assert outcome.board.value("HR", 1) == pytest.approx(REPEATS)


def test_the_oracle_would_catch_a_harness_that_leaks_the_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def leaky(sessions: list[list[Event]], *, online: bool) -> Iterator[tuple[int, int, Event]]:
        for index, events in enumerate(sessions):
            for step in range(len(events)):
                yield index, step, events[min(step + 1, len(events) - 1)]

    monkeypatch.setattr(protocols, "_deliveries", leaky)
    outcome = run_next(Recorder(), replay_data(), online=False, kmax=5)
    assert outcome.board.value("HR", 1) == 1.0


# -- the engine: static freezes the model, online learns -------------------------------


def features(system: EngineSystem) -> dict[str, Any]:
    snap = system.snapshot()
    return {k: snap[k] for k in ("coview", "sequence", "popularity")}


def engine_data() -> protocols.NextData:
    train = sessions_of({"t1": "abc", "t2": "cd"})  # never b with d
    return next_data(train, sessions_of({"s1": "abdc", "s2": "dcba"}, start=100))


def test_static_replay_leaves_the_trained_features_unchanged() -> None:
    system = EngineSystem(EngineSettings())
    data = engine_data()
    system.fit(data.train, online=False)
    before = features(system)
    outcome = run_next(_Prefitted(system), data, online=False, kmax=5)
    assert outcome.board.predictions == 6
    assert features(system) == before


def test_online_replay_learns_from_the_test_stream() -> None:
    system = EngineSystem(EngineSettings())
    data = engine_data()
    system.fit(data.train, online=True)
    before = features(system)
    run_next(_Prefitted(system), data, online=True, kmax=5)
    after = features(system)
    assert after != before
    assert "b" not in before["coview"]["d"]
    assert "b" in after["coview"]["d"]


class _Prefitted:
    """An already fitted system, so a test can look at it before the replay."""

    def __init__(self, system: EngineSystem) -> None:
        self.system = system
        self.name = system.name
        self.observe = system.observe
        self.rank = system.rank
        self.end_session = system.end_session

    def fit(self, train: Sequence[Event], *, online: bool) -> None:
        return None


def test_engine_ranks_the_whole_catalogue_including_the_session_items() -> None:
    system = EngineSystem(EngineSettings())
    data = engine_data()
    system.fit(data.train, online=False)
    system.observe(ev("eval:0", "a", 200))
    ranking = system.rank(session_id="eval:0", user_id=None, n=3, exclude=frozenset())
    assert "a" in ranking.items  # the item just seen stays a candidate
    assert set(ranking.items) <= data.catalogue


def test_frozen_overlay_reads_what_the_memory_store_would() -> None:
    system = EngineSystem(EngineSettings())
    system.fit(sessions_of({"t1": "abc", "t2": "bcd"}), online=False)
    base = system.store
    state = SessionState("s", "u", items=["a", "c"], last_ts=50.0)
    overlay = FrozenFeatures(base)
    delta = FeatureDelta(landmark=base.landmark() or 0.0, sessions={"s": state})
    delta.offsets = {0: 1}
    overlay.apply(delta)
    mine = overlay.recommendation_inputs(
        user_id=None, session_id="s", context_items=10, related_per_item=5, popular=5, category=None
    )
    delta.base_offsets = base.applied_offsets()
    delta.offsets = {0: delta.base_offsets[0] + 1}
    base.apply(delta)
    theirs = base.recommendation_inputs(
        user_id=None, session_id="s", context_items=10, related_per_item=5, popular=5, category=None
    )
    assert (mine.context, mine.related, mine.popular) == (
        theirs.context,
        theirs.related,
        theirs.popular,
    )
    # A user the overlay never saw reads as the frozen store has them (the user protocol).
    mine = overlay.recommendation_inputs(
        user_id="ut1",
        session_id=None,
        context_items=10,
        related_per_item=5,
        popular=5,
        category=None,
    )
    theirs = base.recommendation_inputs(
        user_id="ut1",
        session_id=None,
        context_items=10,
        related_per_item=5,
        popular=5,
        category=None,
    )
    assert mine.context == theirs.context == ["c", "b", "a"]
    assert mine.related == theirs.related


# -- baselines ----------------------------------------------------------------------------

TRAIN = {"s1": "abc", "s2": "ab", "s3": "bcd", "s4": "ac", "s5": "b"}  # a3 b4 c3 d1


def fitted(system: Baseline, current: str = "") -> Baseline:
    system.fit(sessions_of(TRAIN), online=False)
    for i, item in enumerate(current):
        system.observe(ev("q", item, 100.0 + i))
    return system


def order(r: Ranking) -> list[str | set[str]]:
    """Items best first, tie groups as sets."""
    out: list[str | set[str]] = []
    for i, (item, score) in enumerate(zip(r.items, r.scores, strict=True)):
        if i and score == r.scores[i - 1]:
            last = out[-1]
            out[-1] = (last if isinstance(last, set) else {last}) | {item}
        else:
            out.append(item)
    return out


def ask(
    system: Baseline, n: int = 10, exclude: frozenset[str] = frozenset()
) -> list[str | set[str]]:
    return order(system.rank(session_id="q", user_id=None, n=n, exclude=exclude))


def test_pop_ranks_by_training_count_and_completes_the_last_tie() -> None:
    pop = fitted(Pop())
    assert ask(pop) == ["b", {"a", "c"}, "d"]
    assert ask(pop, n=2) == ["b", {"a", "c"}]  # not cut inside the tie of a and c
    assert ask(pop, exclude=frozenset("b")) == [{"a", "c"}, "d"]


def test_spop_counts_the_session_then_breaks_ties_by_popularity() -> None:
    assert ask(fitted(SessionPop(), "dcd")) == ["d", "c", "b", "a"]
    assert ask(fitted(SessionPop(), "dc")) == ["c", "d", "b", "a"]


def test_sr_scores_the_rules_of_the_last_item() -> None:
    # a→b: 1 (s1) + 1 (s2); a→c: 1/2 (s1) + 1 (s4); then popularity pads: a (3), d (1).
    assert ask(fitted(SequentialRules(), "da")) == ["b", "c", "a", "d"]
    assert ask(fitted(SequentialRules(keep=1), "da")) == ["b", {"a", "c"}, "d"]
    assert ask(fitted(SequentialRules(keep=1), "db"))[0] == "c"  # b→c 2 beats b→d 1/2
    assert ask(fitted(SequentialRules(steps=1), "dc")) == ["d", "b", {"a", "c"}]


def test_sr_rule_weights_fall_with_distance() -> None:
    sr = SequentialRules()
    sr.fit(sessions_of(TRAIN), online=False)
    assert sr._rules["a"] == {"b": 2.0, "c": 1.5}
    assert sr._rules["b"] == {"c": 2.0, "d": 0.5}


def test_vsknn_weighs_recent_items_and_scores_neighbour_items() -> None:
    # Current session a, b: weights a 1/2, b 1. Similarities (dot / 2 distinct items):
    # s1 {abc} .75, s2 {ab} .75, s3 {bcd} .5, s4 {ac} .25, s5 {b} .5. s4 shares only a,
    # one step back from the end: its items get .25 / 2. a 1.625, b 2.5, c 1.375, d .5.
    scores = fitted(VSKNN())._scores(["a", "b"], "q", None)
    assert dict(scores) == pytest.approx({"a": 1.625, "b": 2.5, "c": 1.375, "d": 0.5})
    assert ask(fitted(VSKNN(), "ab")) == ["b", "a", "c", "d"]
    # k = 2: only s1 and s2 count; d comes from the popularity padding.
    assert ask(fitted(VSKNN(k=2), "ab")) == [{"a", "b"}, "c", "d"]
    # sample = 1: only the most recent candidate session (s5) is a neighbour.
    assert ask(fitted(VSKNN(sample=1), "ab")) == ["b", {"a", "c"}, "d"]


def test_popularity_stays_ordered_under_increments() -> None:
    pop = Popularity()
    for item in "abcabcaadddde":
        pop.add(item)
        counts = [c for _, c in pop.order()]
        assert counts == sorted(counts, reverse=True)
    assert dict(pop.order()) == {"a": 4, "b": 2, "c": 2, "d": 4, "e": 1}


def test_online_baselines_learn_static_ones_do_not() -> None:
    data = replay_data()
    static, online = SequentialRules(), SequentialRules()
    run_next(static, data, online=False, kmax=5)
    run_next(online, data, online=True, kmax=5)
    assert "d" not in static._rules["d"]
    assert online._rules["d"]["d"] == 1.0  # s3 views d twice in a row


# -- user protocol and the command --------------------------------------------------------


def test_user_protocol_ranks_only_unrated_items() -> None:
    events = sessions_of({"s1": "abc", "s2": "cad", "s3": "cb"})
    data = user_data(events)  # held out: us1 c, us2 d (never trained on: dropped), us3 b
    outcome = run_user(Pop(), data, kmax=3)
    # Training counts a 2, b 1, c 2. us1 rated a, b: c is its only candidate. us3 rated c:
    # a (2) comes before its target b (1).
    assert outcome.board.predictions == 2
    assert outcome.board.value("HR", 1) == pytest.approx(1 / 2)
    assert outcome.board.value("HR", 2) == pytest.approx(1.0)
    assert outcome.board.value("NDCG", 2) == pytest.approx((1 + 1 / math.log2(3)) / 2)


def write_clicks(path: Path) -> Path:
    """Six sessions on six days; the last 1.5 days hold sessions 4 and 5."""
    lines = ["SessionId\tItemId\tTime"]
    for n, items in enumerate(["abc", "abd", "bcd", "acd", "abc", "bcd"]):
        lines += [f"{n}\t{item}\t{n * 86400 + i}" for i, item in enumerate(items)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reco_eval_prints_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_clicks(tmp_path / "clicks.tsv")
    args = ["eval", "--train", str(data), "--format", "session-tsv", "--split-days", "1.5"]
    assert main([*args, "--baselines", "pop,sr", "--k", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "static"
    assert result["sessions"]["test_kept"] == 2
    assert result["prediction_events"] == 4
    assert set(result["systems"]) == {"engine", "pop", "sr"}
    engine = result["systems"]["engine"]
    for key in ("HR@1", "HR@5", "MRR@5", "ci95", "build_s", "ms_per_rec_p99", "prediction_events"):
        assert key in engine
    assert engine["prediction_events"] == 4


def test_a_given_test_file_scores_as_the_same_split_by_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = write_clicks(tmp_path / "clicks.tsv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train.write_text("\n".join([header, *rows[:12]]) + "\n")  # sessions 0 to 3
    test.write_text("\n".join([header, *rows[12:]]) + "\n")  # sessions 4 and 5
    common = ["--format", "session-tsv", "--baselines", "pop,sr", "--k", "5", "--json"]

    def figures(*args: str) -> dict[str, dict[str, float]]:
        assert main(["eval", *args, *common]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["prediction_events"] == 4
        return {
            name: {k: v for k, v in s.items() if k.startswith(("HR@", "MRR@"))}
            for name, s in result["systems"].items()
        }

    by_days = figures("--train", str(tmp_path / "clicks.tsv"), "--split-days", "1.5")
    assert figures("--train", str(train), "--test", str(test)) == by_days


def test_reco_eval_plots_the_curves(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    data = write_clicks(tmp_path / "clicks.tsv")
    plot = tmp_path / "curves.png"
    args = ["eval", "--train", str(data), "--format", "session-tsv", "--split-days", "1.5"]
    assert main([*args, "--mode", "online", "--baselines", "none", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_reco_eval_refuses_a_next_run_without_a_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_clicks(tmp_path / "clicks.tsv")
    assert main(["eval", "--train", str(data), "--format", "session-tsv"]) == 2
    assert "exactly one of --test FILE and --split-days D" in capsys.readouterr().err


def test_the_replay_reads_the_recent_window_at_its_own_time() -> None:
    """Requests of a replay happen at its latest event's time (the ranker's trend columns
    read the window then); a frozen model's time stays at the end of its training."""
    day = 86400.0
    train = [ev("s1", "a", day + 1), ev("s1", "b", day + 2), ev("s2", "a", day + 3)]
    view = EngineSettings().event_weights["view"]
    for online in (True, False):
        system = EngineSystem(EngineSettings())
        system.fit(train, online=online)
        _, ranked = system.candidates(session_id="s2")
        assert ranked.recent == {"a": 2 * view, "b": view}
        system.observe(ev("s2", "c", 3 * day))
        _, ranked = system.candidates(session_id="s2")
        if online:
            assert system.now == 3 * day
            assert ranked.recent == {"c": view}, "two days on: only the new event's window"
        else:
            assert system.now == day + 3
            assert ranked.recent == {"a": 2 * view, "b": view}
