"""Event-type weights against purchase prediction on Taobao and REES46 (docs/event-types.md).

Each row is one ``reco eval --target purchase`` run of the engine under one
``RECO_EVENT_WEIGHTS``: the same loading, split, replay, metrics and bootstrap (2,000
resamples, seed 0) as the command prints. Next to each figure's 95 % interval, the paired
95 % interval of its difference from the defaults' row of the same mode: both runs score
the same purchases, so the pairing shows whether a weighting moves them beyond the noise.
The reference baselines run once per mode on the default stream (they ignore event types).

    .venv/bin/python tools/event_types_study.py > event-types-tables.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Run as a script, the repository root (which holds ``tools``) is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.dataset_paths import HELP as DATA_HELP
from tools.dataset_paths import default_dir, require_dir

from reco.evaluation.baselines import BASELINES
from reco.evaluation.data import load
from reco.evaluation.engine import EngineSystem
from reco.evaluation.metrics import Scoreboard
from reco.evaluation.protocols import Outcome
from reco.evaluation.purchase import Unit, purchase_data, run_purchase, split_by_time
from reco.evaluation.runner import embedding_params
from reco.evaluation.systems import System
from reco.settings import EngineSettings

FIGURES = (("HR", 5), ("HR", 20), ("MRR", 20))
PAIRED = (("HR", 20), ("MRR", 20))
RESAMPLES = 2000

Weights = dict[str, float]
# The defaults before this study, spelt out: the reference row whatever settings.py holds.
DEFAULTS: Weights = {"view": 1, "click": 3, "cart": 5, "purchase": 10}
ONES: Weights = {"view": 1, "click": 1, "cart": 1, "purchase": 1}
VIEWS: Weights = {"view": 1, "click": 0, "cart": 0, "purchase": 0}
STRONG: Weights = {"view": 1, "click": 3, "cart": 10, "purchase": 30}
STRONGER: Weights = {"view": 1, "click": 3, "cart": 20, "purchase": 100}


@dataclass(frozen=True)
class Study:
    name: str
    file: str
    fmt: str
    split_days: float
    unit: Unit
    weightings: tuple[tuple[str, Weights], ...]


BASE = (
    ("types ignored: all 1", ONES),
    ("defaults: view 1, click 3, cart 5, purchase 10", DEFAULTS),
    ("views only: others 0", VIEWS),
    ("stronger: cart 10, purchase 30", STRONG),
    ("strongest: cart 20, purchase 100", STRONGER),
)
FAV = (
    ("types ignored, fav 1", {**ONES, "fav": 1}),
    ("defaults, fav 0 (accepted, no weight)", {**DEFAULTS, "fav": 0}),
    ("defaults, fav 3 (= click)", {**DEFAULTS, "fav": 3}),
    ("defaults, fav 5 (= cart)", {**DEFAULTS, "fav": 5}),
    ("views only, fav 0", {**VIEWS, "fav": 0}),
    ("stronger, fav 10 (= cart)", {**STRONG, "fav": 10}),
)
STUDIES = {
    "taobao": Study(
        "Taobao", "taobao-userbehavior-sample/UserBehavior.csv", "taobao", 4, "user", BASE + FAV
    ),
    "taobao-session": Study(
        "Taobao by session",
        "taobao-userbehavior-sample/UserBehavior.csv",
        "taobao",
        4,
        "session",
        (BASE[1],),
    ),
    "rees46": Study(
        "REES46",
        "rees46-ecommerce-oct2019-sample/2019-Oct-sample.csv",
        "rees46",
        0.006,
        "session",
        BASE,
    ),
}


def evaluate(
    data_dir: Path, study: Study, weights: Weights, online: bool, systems: Sequence[System]
) -> tuple[list[Outcome], dict[str, int]]:
    settings = EngineSettings(event_weights=weights)
    loaded = load(data_dir / study.file, study.fmt, settings, prefix="t")
    data = purchase_data(*split_by_time(loaded.events, study.split_days), study.unit)
    outcomes = [run_purchase(s, data, online=online, kmax=20) for s in systems]
    return outcomes, data.counts | {"rejected": sum(loaded.rejected.values())}


def cells(board: Scoreboard, reference: Scoreboard | None) -> list[str]:
    intervals = board.intervals(FIGURES, resamples=RESAMPLES, seed=0)
    out = [
        f"{_f(board.value(m, k))} [{_f(lo)}, {_f(hi)}]"
        for (m, k), (lo, hi) in zip(FIGURES, intervals, strict=True)
    ]
    if reference is None:
        return [*out, "", ""]
    paired = board.paired_intervals(reference, PAIRED, resamples=RESAMPLES, seed=0)
    for (m, k), (lo, hi) in zip(PAIRED, paired, strict=True):
        delta = board.value(m, k) - reference.value(m, k)
        out.append(f"{delta:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return out


def _f(value: float) -> str:
    return f"{value:.3f}".replace("0.", ".", 1)


def engine(weights: Weights) -> EngineSystem:
    """The engine as ``reco eval`` builds it (item vectors trained when weighted)."""
    settings = EngineSettings(event_weights=weights)
    return EngineSystem(settings, embeddings=embedding_params("auto", settings))


def table(data_dir: Path, study: Study) -> str:
    head = (
        "| weights | mode | HR@5 [95 % CI] | HR@20 [95 % CI] | MRR@20 [95 % CI] "
        "| ΔHR@20 vs defaults [paired CI] | ΔMRR@20 vs defaults [paired CI] |\n"
        "|---|---|---:|---:|---:|---:|---:|"
    )
    rows, notes = [head], []
    for online in (False, True):
        mode = "online" if online else "static"
        (reference,), counts = evaluate(data_dir, study, DEFAULTS, online, [engine(DEFAULTS)])
        notes.append(f"{mode}: {json.dumps(counts)}")
        for label, weights in study.weightings:
            if weights == DEFAULTS:
                board, compare = reference.board, None
            else:
                (outcome,), _ = evaluate(data_dir, study, weights, online, [engine(weights)])
                board, compare = outcome.board, reference.board
            rows.append(f"| engine, {label} | {mode} | {' | '.join(cells(board, compare))} |")
        baselines = [make() for make in BASELINES.values()]
        for outcome in evaluate(data_dir, study, DEFAULTS, online, baselines)[0]:
            row = " | ".join(cells(outcome.board, None))
            rows.append(f"| {outcome.name} | {mode} | {row} |")
        print(f"{study.name} {mode} done", file=sys.stderr)
    return "\n".join([f"**{study.name}**", "", *rows, "", *(f"- {n}" for n in notes), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("studies", nargs="*", help=f"some of {', '.join(STUDIES)} (default all)")
    parser.add_argument("--data", type=Path, default=default_dir(), help=DATA_HELP)
    args = parser.parse_args()
    data = require_dir(parser, args.data)
    unknown = set(args.studies) - set(STUDIES)
    if unknown:
        parser.error(f"unknown studies {', '.join(sorted(unknown))}")
    for name in args.studies or STUDIES:
        print(table(data, STUDIES[name]))


if __name__ == "__main__":
    main()
