"""One ingest process against one Kafka broker, nothing else: its batch throughput and its
CPU time per event, optionally under a sampling profiler.

``python -m benchmarks.ingest [--seconds 5] [--repeats 3] [--profile ingest.svg]`` prints one
JSON object. ``make bench`` measures the same in the full stack; this is the loop to work
on the ingest path alone (the processor, the archiver and the api do not take the cores).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from benchmarks.load import ingest_batch
from reco.local.servers import KafkaServer
from reco.local.stack import ServiceProcess

PY_SPY = Path(sys.executable).parent / "py-spy"
# py-spy's output by the file's suffix; any other suffix gets collapsed stacks (one a line).
_PROFILE_FORMATS = {".svg": "flamegraph", ".json": "speedscope"}


def measure(url: str, seconds: float, connections: int, batch: int) -> dict[str, Any]:
    """One run of the load generator in its own process, with the server's CPU per event."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", "ingest-batch", "--url", url,
         "--seconds", str(seconds), "--connections", str(connections), "--batch", str(batch),
         "--server-cpu"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = orjson.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy profile of the ingest process (.svg, .json, or collapsed stacks)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, KafkaServer() as kafka:
        env = {
            "RECO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "RECO_TOPIC_PARTITIONS": str(args.partitions),
        }
        ingest = ServiceProcess("ingest", env, Path(tmp)).start()
        try:
            ingest_batch(ingest.url, 2.0, args.batch, args.connections)  # warm up
            spy = None
            if args.profile:
                assert ingest.proc is not None
                spy = subprocess.Popen(
                    [str(PY_SPY), "record", "--pid", str(ingest.proc.pid), "--threads",
                     "--duration", str(int(args.seconds)), "--rate", "200",
                     "--output", str(args.profile), "--nonblocking",
                     "--format", _PROFILE_FORMATS.get(args.profile.suffix, "raw")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            runs = [
                measure(ingest.url, args.seconds, args.connections, args.batch)
                for _ in range(args.repeats)
            ]
            if spy is not None:
                spy.wait(60)
        finally:
            ingest.stop()
    result = {
        "ingest_batch_events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
        "ingest_cpu_us_per_event": round(
            statistics.median(r["server_cpu_us_per_event"] for r in runs), 2
        ),
        "runs": runs,
    }
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
