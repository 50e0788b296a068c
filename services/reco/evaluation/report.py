"""Figures of a run: the JSON summary, a text table, and the HR@K / MRR@K curves as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reco.evaluation.protocols import Outcome

Figures = tuple[tuple[str, int], ...]

NEXT_FIGURES: Figures = (("HR", 1), ("HR", 5), ("HR", 10), ("HR", 20), ("MRR", 10), ("MRR", 20))
USER_FIGURES: Figures = (*NEXT_FIGURES, ("NDCG", 10), ("NDCG", 20))

TIMING = (
    "build_s: wall time of fit() on the training events (engine: encode every event, append "
    "it to the in-memory log, processor batches of 2,000 into the MemoryFeatureStore; file "
    "reading and validation are shared and reported as load_s). ms_per_rec: wall time of one "
    "rank() call (engine: Recommender.recommend for k+30 items, i.e. the store read, scoring, "
    "rules and the response model, plus turning the response into a ranking). "
    "ms_per_event_mean: delivering one replayed event (engine: encode, append to the log and "
    "one processor batch of that record, applied to the store). Single thread, in process."
)


def summarise(
    outcome: Outcome, figures: Sequence[tuple[str, int]], *, resamples: int, seed: int
) -> dict[str, Any]:
    """One system's figures, their 95 % session-bootstrap intervals and its timings."""
    board = outcome.board
    wanted = [(m, k) for m, k in figures if k <= board.kmax]
    # A run with a smaller largest K still reports both metrics at that K.
    wanted += [(m, board.kmax) for m in ("HR", "MRR") if (m, board.kmax) not in wanted]
    intervals = board.intervals(wanted, resamples=resamples, seed=seed)
    out: dict[str, Any] = {f"{m}@{k}": round(board.value(m, k), 4) for m, k in wanted}
    out["ci95"] = {
        f"{m}@{k}": [round(lo, 4), round(hi, 4)]
        for (m, k), (lo, hi) in zip(wanted, intervals, strict=True)
    }
    out["prediction_events"] = board.predictions
    out["open_ties"] = board.open_ties
    out.update(outcome.timing())
    out["curves"] = {m: [round(v, 4) for v in board.curve(m)] for m in ("HR", "MRR")}
    out.update(outcome.details)
    return out


def paired(
    a: Outcome, b: Outcome, figures: Sequence[tuple[str, int]], *, resamples: int, seed: int
) -> dict[str, list[float]]:
    """``a - b`` per figure with its paired 95 % session-bootstrap interval (both systems
    scored the same predictions, so what they share cancels)."""
    wanted = [(m, k) for m, k in figures if k <= a.board.kmax]
    intervals = a.board.paired_intervals(b.board, wanted, resamples=resamples, seed=seed)
    return {
        f"{m}@{k}": [
            round(a.board.value(m, k) - b.board.value(m, k), 4),
            round(lo, 4),
            round(hi, 4),
        ]
        for (m, k), (lo, hi) in zip(wanted, intervals, strict=True)
    }


def table(result: dict[str, Any]) -> str:
    """A plain-text table of the headline figures, one line per system."""
    systems: dict[str, dict[str, Any]] = result["systems"]
    names = [f"{m}@{k}" for m, k in USER_FIGURES if any(f"{m}@{k}" in s for s in systems.values())]
    head = f"{'system':<8}" + "".join(f"{n:>9}" for n in names) + f"{'build_s':>9}{'ms/rec':>8}"
    lines = [head]
    for name, s in systems.items():
        cells = "".join(f"{s.get(n, float('nan')):>9.4f}" for n in names)
        lines.append(f"{name:<8}{cells}{s['build_s']:>9.2f}{s['ms_per_rec_mean']:>8.2f}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """HR@K and MRR@K for K = 1 … k, one line per system, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems: dict[str, dict[str, Any]] = result["systems"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for axis, metric in zip(axes, ("HR", "MRR"), strict=True):
        for name, s in systems.items():
            curve = s["curves"][metric]
            axis.plot(range(1, len(curve) + 1), curve, marker=".", label=name)
        axis.set_xlabel("K")
        axis.set_ylabel(f"{metric}@K")
        axis.set_xticks(range(1, int(result["k"]) + 1, 2))
        axis.grid(alpha=0.3)
    axes[0].legend()
    label = result["protocol"] if result["protocol"] == "user" else f"next, {result['mode']}"
    if result.get("target") == "purchase":
        label = f"next purchase by {result['unit']}, {result['mode']}"
    fig.suptitle(f"{result['dataset']} ({label}): {result['prediction_events']} predictions")
    fig.savefig(path, dpi=120)
    plt.close(fig)
