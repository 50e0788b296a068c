"""Choose the embedding algorithm and weight on inner splits (never a test part).

For Diginetica (the next protocol, 4 inner folds of its training part) and MovieLens (the
user protocol, each user's last training rating), every pair of algorithm (item2vec, ALS)
and ``embedding`` weight is scored in static mode, the vectors trained on the inner
training part as ``reco eval --embeddings`` trains them, and compared, paired, with the
same engine without the term (weight 0). The other settings are today's defaults (and, for
MovieLens, also its profile). Prints markdown; ``--json`` keeps every figure.

    .venv/bin/python tools/embedding_study.py --json eval-results/embeddings.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tools.tune import (
    DATA_DIR,
    DATASETS,
    InnerBench,
    inner_next_splits,
    inner_user_data,
    say,
)

from reco.evaluation.data import load, next_data
from reco.settings import EngineSettings

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
ALGORITHMS: tuple[Literal["item2vec", "als"], ...] = ("item2vec", "als")
PROFILES = {
    "diginetica": {},
    "movielens": {},
    "movielens-profile": {"weights.neighbours": 1.0},
}


def benches(args: argparse.Namespace, base: EngineSettings, algorithm: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dg = DATASETS["diginetica"]
    loaded = load(args.data_dir / dg.file, dg.fmt, base, prefix="t")
    folds = inner_next_splits(loaded.events, dg.split_days or 0.0, 7.0, args.inner_folds)
    splits = [next_data(a, b) for a, b in folds]
    out["diginetica"] = InnerBench(dg, splits, base, resamples=args.resamples, seed=0,
                                   embeddings=algorithm)  # type: ignore[arg-type]  # fmt: skip
    ml = DATASETS["movielens"]
    loaded = load(args.data_dir / ml.file, ml.fmt, base, prefix="t")
    inner = inner_user_data(loaded.events)
    bench = InnerBench(ml, [inner], base, resamples=args.resamples, seed=0, stores=2,
                       embeddings=algorithm)  # type: ignore[arg-type]  # fmt: skip
    out["movielens"] = out["movielens-profile"] = bench
    return out


def study(args: argparse.Namespace) -> dict[str, Any]:
    base = EngineSettings()
    rows: list[dict[str, Any]] = []
    for algorithm in ALGORITHMS:
        by_name = benches(args, base, algorithm)
        for name, profile in PROFILES.items():
            bench = by_name[name]
            _, objective = bench.dataset.metrics
            reported = bench.dataset.metrics[0]
            zero = bench.score(profile | {"weights.embedding": 0.0})
            for weight in WEIGHTS:
                s = bench.score(profile | {"weights.embedding": weight})
                diff = s.minus(zero, objective, resamples=args.resamples, seed=0)
                rows.append({
                    "dataset": name, "algorithm": algorithm, "weight": weight,
                    reported: s.value(reported), objective: s.value(objective),
                    "objective": objective, "minus_zero": list(diff),
                    "predictions": sum(s.counts),
                })  # fmt: skip
    return {"argv": sys.argv, "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = []
    for name in PROFILES:
        rows = [r for r in result["rows"] if r["dataset"] == name]
        if not rows:
            continue
        objective = rows[0]["objective"]
        reported = "HR@10" if objective == "NDCG@10" else "HR@20"
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
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--inner-folds", type=int, default=4)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--json", type=Path)
    p.add_argument("--report", type=Path, help="only print the table of a --json file")
    args = p.parse_args(argv)
    if args.report:
        print(table(json.loads(args.report.read_text())))
        return
    result = study(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    print(table(result))
    say("done")


if __name__ == "__main__":
    main()
