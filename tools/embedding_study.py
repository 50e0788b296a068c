"""Choose the embedding algorithm and weight on inner splits (never a test part).

For Diginetica (the next protocol, 4 inner folds of its training part) and MovieLens (the
user protocol, each user's last training rating), every pair of algorithm (item2vec, ALS)
and ``embedding`` weight is scored in static mode, the vectors trained on the inner
training part as ``reco eval --embeddings`` trains them, and compared, paired, with the
same engine without the term (weight 0). The other settings are today's defaults. Prints
markdown; ``--json`` keeps every figure.

    .venv/bin/python tools/embedding_study.py --json eval-results/embeddings.json

``--als-grid`` searches ALS's own settings instead, on the same inner splits, at embedding
weight ``--weight``: one axis at a time around ``TrainParams``' defaults (``GRID``), each
value compared, paired, with the defaults and with weight 0. Values in bold sit on the
axis's plateau (not worse than the axis's best beyond noise).

    .venv/bin/python tools/embedding_study.py --als-grid --json eval-results/als-grid.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

# Run as a script, the repository root (which holds ``tools``) is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.dataset_paths import HELP as DATA_HELP
from tools.dataset_paths import require_dir
from tools.tune import (
    DATA_DIR,
    DATASETS,
    InnerBench,
    Score,
    inner_next_splits,
    inner_user_data,
    say,
)

from reco.embeddings.training import TrainParams, corpus
from reco.evaluation.data import NextData, UserData, load, next_data
from reco.evaluation.runner import Embeddings
from reco.settings import EngineSettings

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
ALGORITHMS: tuple[Literal["item2vec", "als"], ...] = ("item2vec", "als")


Split = NextData | UserData
STORES = {"diginetica": 4, "movielens": 2}
"""Trained stores an ``InnerBench`` keeps per split (MovieLens's are large)."""


def inner_splits(args: argparse.Namespace, base: EngineSettings) -> dict[str, list[Split]]:
    """Diginetica's 4 inner folds of its training part; MovieLens's last training ratings."""
    dg = DATASETS["diginetica"]
    loaded = load(args.data_dir / dg.file, dg.fmt, base, prefix="t")
    folds = inner_next_splits(loaded.events, dg.split_days or 0.0, 7.0, args.inner_folds)
    ml = DATASETS["movielens"]
    users = inner_user_data(load(args.data_dir / ml.file, ml.fmt, base, prefix="t").events)
    return {"diginetica": [next_data(a, b) for a, b in folds], "movielens": [users]}


def benches(
    args: argparse.Namespace, base: EngineSettings, algorithm: Embeddings
) -> dict[str, InnerBench]:
    return {
        name: InnerBench(DATASETS[name], splits, base, resamples=args.resamples, seed=0,
                         stores=STORES[name], embeddings=algorithm)
        for name, splits in inner_splits(args, base).items()
    }  # fmt: skip


def study(args: argparse.Namespace) -> dict[str, Any]:
    base = EngineSettings()
    rows: list[dict[str, Any]] = []
    for algorithm in ALGORITHMS:
        by_name = benches(args, base, algorithm)
        for name, bench in by_name.items():
            _, objective = bench.dataset.metrics
            reported = bench.dataset.metrics[0]
            zero = bench.score({"weights.embedding": 0.0})
            for weight in WEIGHTS:
                s = bench.score({"weights.embedding": weight})
                diff = s.minus(zero, objective, resamples=args.resamples, seed=0)
                rows.append({
                    "dataset": name, "algorithm": algorithm, "weight": weight,
                    reported: s.value(reported), objective: s.value(objective),
                    "objective": objective, "minus_zero": list(diff),
                    "predictions": sum(s.counts),
                })  # fmt: skip
    return {"argv": sys.argv, "rows": rows}


# -- ALS's own settings ---------------------------------------------------------------------

GRID: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("min_count", (1, 2, 3, 5, 10)),
    ("dim", (32, 64, 128)),
    ("regularization", (0.01, 0.05, 0.2, 1.0)),
    ("epochs", (10, 20, 40)),
    # Not a setting: how far another random start of the same ALS moves the figures, a
    # noise the session bootstrap (which holds the trained vectors fixed) does not see.
    ("seed", (7, 8, 9)),
)
ALS = TrainParams(algorithm="als")


def with_value(params: TrainParams, axis: str, value: float) -> TrainParams:
    """``params`` with one field changed, kept at the field's own type (int or float)."""
    kind = type(getattr(params, axis))
    return replace(params, **{axis: kind(value)})


def coverage(splits: Sequence[Split], base: EngineSettings) -> dict[str, list[float]]:
    """Per ``min_count`` of the grid, averaged over the splits: the share of the training
    items that ``_als`` keeps (seen by at least that many users), and the share of the
    inner targets whose item has a vector."""
    values = dict(GRID)["min_count"]
    items: dict[str, list[float]] = {f"{m:g}": [] for m in values}
    targets: dict[str, list[float]] = {f"{m:g}": [] for m in values}
    for data in splits:
        users = corpus(data.train, base.event_weights, base.session_gap_s).user_items.values()
        seen = Counter(item for items in users for item in items)
        if isinstance(data, NextData):
            wanted = [s[t + 1].item_id for s in data.sessions for t in range(len(s) - 1)]
        else:
            wanted = [e.item_id for e in data.targets]
        for m in values:
            items[f"{m:g}"].append(sum(c >= m for c in seen.values()) / len(seen))
            targets[f"{m:g}"].append(sum(seen[i] >= m for i in wanted) / len(wanted))
    return {m: [sum(items[m]) / len(items[m]), sum(targets[m]) / len(targets[m])] for m in items}


def als_grid(args: argparse.Namespace) -> dict[str, Any]:
    """Each ``GRID`` value at weight ``args.weight``, paired against ALS's defaults (same
    weight) and against weight 0. A bench per parameter set: its vectors are trained once
    per split, and the one score at ``args.weight`` is all that reads them."""
    base = EngineSettings()
    stats = {"resamples": args.resamples, "seed": 0}
    at = {"weights.embedding": args.weight}
    rows: list[dict[str, Any]] = []
    covered: dict[str, Any] = {}
    for name, splits in inner_splits(args, base).items():
        dataset = DATASETS[name]
        reported, objective = dataset.metrics
        covered[name] = coverage(splits, base)

        bench = partial(InnerBench, dataset, splits, base, resamples=args.resamples, seed=0,
                        stores=STORES[name])  # fmt: skip
        benched = {ALS: bench(embedding_params=ALS)}
        zero = benched[ALS].score({"weights.embedding": 0.0})
        default = benched[ALS].score(at)
        for axis, values in GRID:
            scores: list[Score] = []
            for value in values:
                params = with_value(ALS, axis, value)
                if params not in benched:
                    say(f"{name}: ALS {axis}={value:g}")
                    benched[params] = bench(embedding_params=params)
                scores.append(benched[params].score(at))
            best = scores[max(range(len(values)), key=lambda i: scores[i].value(objective))]
            for value, s in zip(values, scores, strict=True):
                to_best = s.minus(best, objective, **stats)
                rows.append({
                    "dataset": name, "axis": axis, "value": value,
                    "default": with_value(ALS, axis, value) == ALS,
                    reported: s.value(reported), objective: s.value(objective),
                    "objective": objective, "predictions": sum(s.counts),
                    "minus_default": list(s.minus(default, objective, **stats)),
                    "minus_zero": list(s.minus(zero, objective, **stats)),
                    "minus_best": list(to_best), "plateau": to_best[2] >= 0,
                })  # fmt: skip
        covered[name] |= {
            "weight_0": {reported: zero.value(reported), objective: zero.value(objective)}
        }
    return {
        "argv": sys.argv, "mode": "als-grid", "weight": args.weight,
        "defaults": ALS.as_dict(), "coverage": covered, "rows": rows,
    }  # fmt: skip


def _dataset_rows(result: dict[str, Any], name: str) -> tuple[list[dict[str, Any]], str, str]:
    """A dataset's rows, and the names of its reported metric and of its objective."""
    rows = [r for r in result["rows"] if r["dataset"] == name]
    objective = rows[0]["objective"] if rows else ""
    return rows, "HR@10" if objective == "NDCG@10" else "HR@20", objective


def grid_table(result: dict[str, Any]) -> str:
    lines = []
    defaults = result["defaults"]
    for name in STORES:
        rows, reported, objective = _dataset_rows(result, name)
        if not rows:
            continue
        cover = result["coverage"][name]
        zero = cover["weight_0"]
        lines += [
            f"\n**{name}** (inner split, {rows[0]['predictions']} predictions; ALS at weight "
            f"{result['weight']:g}; weight 0: {reported} {zero[reported]:.3f}, {objective} "
            f"{zero[objective]:.3f}; **bold**: on the axis's plateau)\n",
            f"| axis | value | {reported} | {objective} | minus default [95 %] "
            "| minus weight 0 [95 %] |",
            "|---|---:|---:|---:|---|---|",
        ]
        for r in rows:
            value = f"{r['value']:g}" + (" (default)" if r["default"] else "")
            cells = [r["axis"], f"**{value}**" if r["plateau"] else value]
            cells += [f"{r[reported]:.3f}", f"{r[objective]:.3f}"]
            for key in ("minus_default", "minus_zero"):
                d, lo, hi = r[key]
                cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            lines.append("| " + " | ".join(cells) + " |")
        shares = ", ".join(
            f"{m}: {v[0]:.0%} / {v[1]:.0%}" for m, v in cover.items() if m != "weight_0"
        )
        lines.append(
            f"\nItems with a vector / inner targets with a vector, by min_count: {shares}."
        )
    others = ", ".join(f"{k} {v}" for k, v in defaults.items() if k in dict(GRID))
    return "\n".join(lines) + f"\n\nDefaults: {others}.\n"


def table(result: dict[str, Any]) -> str:
    if result.get("mode") == "als-grid":
        return grid_table(result)
    lines = []
    for name in STORES:
        rows, reported, objective = _dataset_rows(result, name)
        if not rows:
            continue
        lines += [
            f"\n**{name}** (inner split, {rows[0]['predictions']} predictions)\n",
            f"| algorithm | weight | {reported} | {objective} | minus weight 0 [95 %] |",
            "|---|---:|---:|---:|---|",
        ]
        for r in rows:
            d, lo, hi = r["minus_zero"]
            lines.append(
                f"| {r['algorithm']} | {r['weight']:g} | {r[reported]:.3f} | {r[objective]:.3f}"
                f" | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help=DATA_HELP)
    p.add_argument("--inner-folds", type=int, default=4)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--als-grid", action="store_true", help="search ALS's own settings")
    p.add_argument("--weight", type=float, default=0.5, help="--als-grid's embedding weight")
    p.add_argument("--json", type=Path)
    p.add_argument("--report", type=Path, help="only print the table of a --json file")
    args = p.parse_args(argv)
    if args.report:
        print(table(json.loads(args.report.read_text())))
        return
    args.data_dir = require_dir(p, args.data_dir)
    started = time.perf_counter()
    result = als_grid(args) if args.als_grid else study(args)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    print(table(result))
    say("done")


if __name__ == "__main__":
    main()
