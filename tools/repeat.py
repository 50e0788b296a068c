#!/usr/bin/env python3
"""``make test-repeat``: run a test selection N times in a row under a background CPU load.

A test that fails one time in five on a loaded CI machine blocks a landing as surely as a
broken one. This runs the selection (by default the integration tier) ``--runs`` times,
each a fresh pytest process, while ``--load`` processes spin on the CPU as ``stress --cpu``
would, and prints one line per run and a summary; it exits 1 if any run failed. Each run's
output is kept in ``--log-dir``.

    python tools/repeat.py --runs 5 --load 2 -- -m integration
    python tools/repeat.py --runs 20 -- tests/integration/test_stack.py -k kafka_restarted
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _spin() -> None:
    """A busy loop: one core's worth of load until terminated."""
    n = 0
    while True:
        n = (n * 1103515245 + 12345) & 0x7FFFFFFF


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--load", type=int, default=2, help="busy processes (default 2; 0: none)")
    parser.add_argument("--log-dir", type=Path, help="where each run's output goes")
    parser.add_argument("--until-fail", action="store_true", help="stop at the first failure")
    parser.add_argument("pytest_args", nargs="*", help="after --: what pytest runs")
    args = parser.parse_args()
    if args.runs < 1 or args.load < 0:
        parser.error("--runs must be >= 1 and --load >= 0")
    selection = args.pytest_args or ["-m", "integration"]
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="reco-repeat-"))
    log_dir.mkdir(parents=True, exist_ok=True)

    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for spinner in spinners:
        spinner.start()
    print(
        f"{args.runs} runs of pytest {' '.join(selection)} under {args.load} busy processes; "
        f"logs in {log_dir}",
        flush=True,
    )
    results: list[dict[str, object]] = []
    try:
        for run in range(1, args.runs + 1):
            log_path = log_dir / f"run-{run}.log"
            started = time.monotonic()
            with log_path.open("wb") as log:
                code = subprocess.call(
                    [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *selection],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            seconds = time.monotonic() - started
            summary = _summary_line(log_path)
            results.append({"run": run, "exit": code, "seconds": round(seconds, 1)})
            verdict = "passed" if code == 0 else "FAILED"
            print(f"run {run}/{args.runs}: {verdict} in {seconds:.0f} s: {summary}", flush=True)
            if code != 0 and args.until_fail:
                break
    finally:
        for spinner in spinners:
            spinner.terminate()
    failed = [r["run"] for r in results if r["exit"] != 0]
    print(json.dumps({"runs": len(results), "failed": failed, "load": args.load}))
    return 1 if failed else 0


def _summary_line(log_path: Path) -> str:
    """pytest's last line ("12 passed in 3.4s"), or the last line of output."""
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip("= ") if lines else "(no output)"


if __name__ == "__main__":
    raise SystemExit(main())
