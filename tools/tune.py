"""Search the engine's defaults on an inner split of the training part; ablate each signal.

Choosing never looks at a dataset's test part (``docs/evaluation-protocol.md`` §1.2). The
training part ``T`` of the normal split is split again by its own last ``--inner-days`` days
into inner-train / inner-test (:func:`inner_folds`); further folds first cut ``T`` back by its
last sessions, so that more inner predictions make a comparison less noisy. For MovieLens
(user protocol) the inner target is each user's last *training* rating, the second-to-last
overall (:func:`inner_user_data`). The search is a coordinate search in static mode; a value
replaces the current one only when the paired, session-bootstrap 95 % interval of the
difference lies above zero, and then the value chosen is the smoothest of the plateau (the
values not worse than the best beyond noise), not the noisy maximum.

The ablation then runs ``reco eval``'s own runner on the normal split with the chosen
settings: the full engine, the engine with each weighted signal set to 0, and the reference
baselines of the same run.

    .venv/bin/python tools/tune.py --json eval-results/tune.json \\
        --plot docs/img/ablation.png --markdown FILE.md

About 12 min on 2 shared cores; ``--report eval-results/tune.json`` redraws the tables and
the plot of a saved run. Results are written up in ``docs/tuning.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

# Run as a script, the repository root (which holds ``tools``) is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.dataset_paths import HELP as DATA_HELP
from tools.dataset_paths import default_dir, require_dir

from reco.evaluation.data import load, next_data, split_by_days
from reco.evaluation.runner import EvalConfig, run
from reco.evaluation.search import (
    DAY,
    Axis,
    InnerBench,
    Point,
    Score,
    SearchResult,
    configure,
    coordinate_search,
    inner_folds,
    inner_user_data,
    read_point,
    show_point,
    show_values,
    signals,
)
from reco.events import Event
from reco.settings import EngineSettings

__all__ = ["DATASETS", "DATA_DIR", "InnerBench", "Point", "Score", "inner_user_data", "say"]

DATA_DIR = default_dir()
STARTED = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


class _Say(logging.Handler):
    """The search's progress lines (``reco.evaluation.search``'s log) as ``say`` prints."""

    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


_search_log = logging.getLogger("reco.evaluation.search")
_search_log.addHandler(_Say())
_search_log.setLevel(logging.INFO)
_search_log.propagate = False


# -- datasets and inner splits -------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    fmt: str
    split_days: float | None = None
    """The next protocol's test part: sessions ending in the last D days; None: user protocol."""
    own_sessions: bool = True
    """The data names its sessions, so ``session_gap_s`` never applies to them."""

    @property
    def protocol(self) -> Literal["next", "user"]:
        return "user" if self.split_days is None else "next"

    @property
    def metrics(self) -> tuple[str, str]:
        """(reported, objective): the headline pair of the dataset's protocol."""
        return ("HR@10", "NDCG@10") if self.split_days is None else ("HR@20", "MRR@20")

    def config(self, data_dir: Path, *, seed: int = 0, resamples: int = 2000) -> EvalConfig:
        """``reco eval``'s configuration of the dataset's normal split."""
        return EvalConfig(
            train=data_dir / self.file,
            fmt=self.fmt,
            split_days=self.split_days,
            protocol=self.protocol,
            seed=seed,
            resamples=resamples,
            progress=False,
        )

    def command(self) -> str:
        split = (
            "--protocol user" if self.split_days is None else f"--split-days {self.split_days:g}"
        )
        return f"reco eval --train $RECO_DATASETS/{self.file} --format {self.fmt} {split}"


DATASETS = {
    "diginetica": Dataset(
        "diginetica", "diginetica-sample/sample_train-item-views.csv", "diginetica", 7.0
    ),
    "taobao": Dataset(
        "taobao", "taobao-userbehavior-sample/UserBehavior.csv", "taobao", 2.0, own_sessions=False
    ),
    "rees46": Dataset(
        "rees46", "rees46-ecommerce-oct2019-sample/2019-Oct-sample.csv", "rees46", 0.004
    ),
    "movielens": Dataset("movielens", "movielens-100k/u.data", "movielens", own_sessions=False),
}


def inner_next_splits(
    events: Sequence[Event], outer_days: float, inner_days: float, folds: int
) -> list[tuple[list[Event], list[Event]]]:
    """The inner folds of the next protocol's training part; its test part is dropped here."""
    train, _ = split_by_days(events, outer_days)
    return inner_folds(train, inner_days, folds)


# -- coordinate search ---------------------------------------------------------------------


H = 3600.0
DIGINETICA_AXES = (
    Axis("weights.recency", (0, 1, 2, 4, 6, 8)),
    Axis("history_decay", (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)),
    Axis("weights.neighbours", (0, 1, 2, 3, 4, 6)),
    Axis("weights.coview", (0, 0.5, 1, 2, 4)),
    Axis("weights.sequence", (0, 0.5, 1, 2, 4)),
    Axis("weights.popularity", (0, 0.03, 0.1, 0.3, 1)),
    Axis("weights.embedding", (0, 0.25, 0.5, 1, 2)),
    Axis("neighbour_k", (10, 25, 50, 100, 200)),
    Axis("neighbour_sample", (50, 100, 200, 500, 1000)),
    Axis("neighbour_sessions_per_item", (25, 50, 100, 200)),
    Axis("context_items", (2, 3, 5, 10, 20)),
    Axis("related_per_item", (10, 25, 50, 100)),
    Axis("coview_window", (2, 3, 5, 10, 20)),
    Axis("sequence_steps", (1, 2, 3, 5, 8)),
    # Diginetica's timestamps are the day plus the time since the session's start: every
    # session of a day starts at midnight, so only whole days are a real order in time.
    Axis("coview_half_life_s", tuple(d * DAY for d in (1, 3, 7, 30, 90, 365)), "days"),
    Axis("popularity_half_life_s", tuple(d * DAY for d in (1, 3, 7, 14, 30, 90)), "days"),
    # The data names its sessions and the engine keeps a given session id: a no-op here.
    Axis("session_gap_s", (600, 1800, 4 * H, DAY), "no-op: sessions given"),
)
# The user protocol ranks items the user has not rated, so recency (which scores only the
# user's own items) cannot move a figure. The neighbour and related-list caps set most of
# a request's cost on long histories, so they are searched here too.
MOVIELENS_AXES = (
    Axis("weights.neighbours", (0, 0.5, 1, 2, 3)),
    Axis("history_decay", (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)),
    Axis("weights.coview", (0, 0.5, 1, 2, 4, 8, 16)),
    Axis("weights.sequence", (0, 0.5, 1, 2, 4, 8)),
    Axis("weights.popularity", (0, 0.1, 0.3, 1, 3)),
    Axis("weights.embedding", (0, 0.25, 0.5, 1, 2)),
    Axis("context_items", (5, 10, 20, 50)),
    Axis("related_per_item", (10, 25, 50, 100)),
    Axis("neighbour_k", (10, 25, 50, 100)),
    Axis("neighbour_sample", (50, 100, 200, 500)),
    Axis("neighbour_sessions_per_item", (25, 50, 100, 200)),
    Axis("session_gap_s", (1800, 4 * H, DAY), "engine's sessions only"),
)


# -- ablation on the outer split, through reco eval's runner -------------------------------


def ablate(
    dataset: Dataset,
    settings: EngineSettings,
    label: str,
    args: argparse.Namespace,
    same_baselines: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full engine, each weighted signal at 0, and the baselines, through ``run``.

    ``same_baselines``: an earlier ablation of the same dataset whose baselines this one
    shares (they read no engine setting but the sessions and event types), so they are not
    run again.
    """
    config = dataset.config(args.data_dir, seed=args.seed, resamples=args.resamples)
    modes: tuple[Literal["static", "online"], ...] = (
        ("static",) if dataset.protocol == "user" else ("static", "online")
    )
    out: dict[str, Any] = {"dataset": dataset.name, "label": label, "metrics": dataset.metrics}
    out |= {"command": dataset.command(), "weights": settings.weights.model_dump(), "modes": {}}
    for mode in modes:
        clock = time.perf_counter()
        earlier = same_baselines["modes"][mode] if same_baselines else None
        full = run(
            replace(config, mode=mode, baselines=() if earlier else config.baselines), settings
        )
        rows = {"engine": full["systems"]["engine"]}
        for signal in signals(settings):
            without = settings.weights.model_copy(update={signal: 0.0})
            alone = run(
                replace(config, mode=mode, baselines=()),
                settings.model_copy(update={"weights": without}),
            )
            rows[f"-{signal}"] = alone["systems"]["engine"]
        if earlier is None:
            baselines = {n: s for n, s in full["systems"].items() if n != "engine"}
        else:
            baselines = {n: s for n, s in earlier["systems"].items() if n in config.baselines}
        out["modes"][mode] = {
            "predictions": full["prediction_events"],
            "catalogue": full["catalogue"],
            "sessions": full["sessions"],
            "engine_settings": full["engine_settings"],
            "systems": rows | baselines,
        }
        say(f"ablation {dataset.name} ({label}, {mode}): {time.perf_counter() - clock:.0f} s")
    return out


def shares_baselines(a: EngineSettings, b: EngineSettings) -> bool:
    """Whether the baselines see the same data under ``a`` and ``b`` (``load`` reads these)."""
    return (a.session_gap_s, a.event_weights) == (b.session_gap_s, b.event_weights)


# -- output ----------------------------------------------------------------------------------


def _f(value: float) -> str:
    text = f"{value:.3f}"
    return text[1:] if text.startswith("0.") else text


def env_lines(point: Mapping[str, float], base: EngineSettings) -> list[str]:
    """``RECO_*`` lines that turn ``base`` into ``point`` (only the values that differ)."""
    lines = []
    defaults = read_point(base, list(point))
    for name, value in point.items():
        if value != defaults[name]:
            lines.append(f"RECO_{name.upper().replace('.', '__')}={value:g}")
    return lines


def ablation_table(ab: dict[str, Any]) -> str:
    modes = list(ab["modes"])
    head = ["removed signal"] + [f"{mode} {m} [95 % CI]" for mode in modes for m in ab["metrics"]]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    names = [n for n in ab["modes"][modes[0]]["systems"] if n == "engine" or n.startswith("-")]
    labels = {"engine": "none (full engine)"} | {n: f"without {n[1:]}" for n in names[1:]}
    for name in [*names, "vsknn", "sr"]:
        cells = []
        for mode in modes:
            s = ab["modes"][mode]["systems"][name]
            cells += [
                f"{_f(s[m])} [{_f(s['ci95'][m][0])}, {_f(s['ci95'][m][1])}]" for m in ab["metrics"]
            ]
        label = labels.get(name) or {"vsknn": "reference V-SKNN", "sr": "reference SR"}[name]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    first = ab["modes"][modes[0]]
    title = f"**{ab['dataset']}** ({ab['label']}): `{ab['command']}`"
    title += f", {first['predictions']} predictions"
    return title + "\n\n" + "\n".join(lines)


def search_table(result: Mapping[str, Any]) -> str:
    """One row per axis tried: the objective per value, the plateau, the choice."""
    reported, objective = (m for m in result["final"]["chosen"])
    lines = [
        f"| pass | axis | values: {objective} (plateau in bold) | before → chosen |",
        "|---:|---|---|---|",
    ]
    for step in result["steps"]:
        axis = Axis(step["axis"], (), step["note"])
        cells = []
        for row in step["rows"]:
            text = f"{show_values(axis, [row['value']])[1:-1]}: {_f(row[objective])}"
            cells.append(f"**{text}**" if row["plateau"] else text)
        before, chosen = (show_values(axis, [step[k]])[1:-1] for k in ("before", "chosen"))
        change = f"{before} → {chosen}"
        change += " (edge of the grid)" if step.get("edge") else ""
        lines.append(f"| {step['pass']} | {step['axis']} | " + ", ".join(cells) + f" | {change} |")
    final = result["final"]
    tail = [
        f"\nInner split: {final['predictions']} predictions in {final['sessions']} test sessions."
    ]
    for m in (reported, objective):
        c, s, d = final["chosen"][m], final["start"][m], final["chosen_minus_start"][m]
        tail.append(
            f"- {m}: start {_f(s[0])} [{_f(s[1])}, {_f(s[2])}], chosen {_f(c[0])} "
            f"[{_f(c[1])}, {_f(c[2])}]; paired difference {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
        )
    tail.append("\nEach signal's weight set to 0 at the chosen point, paired difference [95 %]:\n")
    for signal, diffs in final["without_minus_chosen"].items():
        cells = [f"{m} {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" for m, d in diffs.items()]
        tail.append(f"- without {signal}: " + ", ".join(cells))
    return "\n".join(lines) + "\n" + "\n".join(tail)


def plot(ablations: Sequence[dict[str, Any]], path: Path) -> None:
    """Per dataset, one bar per removed signal (and V-SKNN), per mode, with 95 % whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(ablations),
        2,
        figsize=(12, 2.9 * len(ablations)),
        squeeze=False,
        constrained_layout=True,
    )
    for row, ab in zip(axes, ablations, strict=True):
        modes = list(ab["modes"])
        names = [n for n in ab["modes"][modes[0]]["systems"] if n == "engine" or n.startswith("-")]
        names.append("vsknn")
        labels = [
            "full" if n == "engine" else "V-SKNN" if n == "vsknn" else f"-{n[1:]}" for n in names
        ]
        for axis, metric in zip(row, reversed(ab["metrics"]), strict=True):
            width = 0.8 / len(modes)
            for j, mode in enumerate(modes):
                systems = ab["modes"][mode]["systems"]
                values = [systems[n][metric] for n in names]
                low = [
                    v - systems[n]["ci95"][metric][0] for n, v in zip(names, values, strict=True)
                ]
                high = [
                    systems[n]["ci95"][metric][1] - v for n, v in zip(names, values, strict=True)
                ]
                xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(names))]
                axis.bar(xs, values, width, yerr=[low, high], capsize=2, label=mode)
                axis.axhline(values[0], color=f"C{j}", linewidth=0.8, linestyle="--")
            axis.set_xticks(range(len(names)), labels, rotation=20)
            axis.set_ylabel(metric)
            axis.set_title(f"{ab['dataset']} ({ab['label']}): {metric}", fontsize=10)
            axis.grid(axis="y", alpha=0.3)
        row[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------


def search_diginetica(args: argparse.Namespace, base: EngineSettings) -> SearchResult:
    dataset = DATASETS["diginetica"]
    loaded = load(args.data_dir / dataset.file, dataset.fmt, base, prefix="t")
    folds = inner_next_splits(
        loaded.events, dataset.split_days or 0.0, args.inner_days, args.inner_folds
    )
    splits = [next_data(inner_train, inner_test) for inner_train, inner_test in folds]
    bench = InnerBench(dataset, splits, base, resamples=args.resamples, seed=args.seed)
    say(f"diginetica: {len(splits)} inner folds, {bench.predictions} inner predictions")
    start = read_point(base, [a.name for a in DIGINETICA_AXES])
    return coordinate_search(bench, start, DIGINETICA_AXES, passes=args.passes)


def search_movielens(args: argparse.Namespace, base: EngineSettings) -> SearchResult:
    dataset = DATASETS["movielens"]
    loaded = load(args.data_dir / dataset.file, dataset.fmt, base, prefix="t")
    inner = inner_user_data(loaded.events)  # each user's second-to-last event is the target
    bench = InnerBench(dataset, [inner], base, resamples=args.resamples, seed=args.seed, stores=2)
    say(f"movielens: {bench.predictions} inner targets (each user's second-to-last rating)")
    start = read_point(base, [a.name for a in MOVIELENS_AXES])
    return coordinate_search(bench, start, MOVIELENS_AXES, passes=args.movielens_passes)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help=DATA_HELP)
    p.add_argument("--inner-days", type=float, default=7.0, help="Diginetica inner test days")
    p.add_argument("--inner-folds", type=int, default=4, help="inner splits, each earlier")
    p.add_argument("--passes", type=int, default=2, help="Diginetica coordinate-search passes")
    p.add_argument("--movielens-passes", type=int, default=2)
    p.add_argument("--no-search", action="store_true", help="ablate today's defaults only")
    p.add_argument("--datasets", default=",".join(DATASETS), help="datasets to ablate")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--json", type=Path, help="write every result to this file")
    p.add_argument("--plot", type=Path, help="draw the ablation to this PNG")
    p.add_argument("--markdown", type=Path, help="also write the markdown tables here")
    p.add_argument("--report", type=Path, help="only redraw tables and plot from a --json file")
    args = p.parse_args(argv)
    if not args.report:
        args.data_dir = require_dir(p, args.data_dir)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.report:
        report(json.loads(args.report.read_text()), args)
        return
    base = EngineSettings()
    out: dict[str, Any] = {"argv": sys.argv, "start_settings": base.model_dump(mode="json")}
    chosen, profile = base, None
    if not args.no_search:
        found = search_diginetica(args, base)
        chosen = configure(base, found.point)
        ml = search_movielens(args, chosen)
        lines = env_lines(ml.point, chosen)
        # A profile only when MovieLens's point differs from the defaults chosen above.
        profile = configure(chosen, ml.point) if lines else None
        out |= {"search": asdict(found), "movielens_search": asdict(ml), "movielens_profile": lines}
        say(f"chosen: {show_point(found.point)}; MovieLens profile: {' '.join(lines)}")
    out["ablation"] = []
    for name in args.datasets.split(","):
        first = ablate(DATASETS[name], chosen, "chosen defaults", args)
        out["ablation"].append(first)
        if name == "movielens" and profile is not None:
            same = first if shares_baselines(chosen, profile) else None
            out["ablation"].append(ablate(DATASETS[name], profile, "MovieLens profile", args, same))
    out["elapsed_s"] = round(time.perf_counter() - STARTED, 1)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    report(out, args)
    say("done")


def report(out: Mapping[str, Any], args: argparse.Namespace) -> None:
    """The markdown tables on stdout (and ``--markdown``), the plot to ``--plot``."""
    parts = []
    if "search" in out:
        parts.append("## Inner-split search: Diginetica\n\n" + search_table(out["search"]))
        parts.append("## Inner-split search: MovieLens\n\n" + search_table(out["movielens_search"]))
        lines = out["movielens_profile"]
        parts.append(
            "MovieLens profile:\n\n```\n" + "\n".join(lines) + "\n```"
            if lines
            else "MovieLens needs no profile: its search ends at the defaults."
        )
    parts += ["## Ablation"] + [ablation_table(ab) for ab in out["ablation"]]
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.plot:
        plot(out["ablation"], args.plot)


if __name__ == "__main__":
    main()
