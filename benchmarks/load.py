"""Load generators that run in their own process (``python -m benchmarks.load KIND ...``) so
that the client does not share the server's interpreter; each prints one JSON object."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ingest_batch(
    url: str, seconds: float, batch: int, connections: int, *, server_cpu: bool = False
) -> dict[str, Any]:
    """Batches of ``batch`` events over ``connections`` keep-alive connections.

    ``server_cpu``: also the CPU time (user + system, every thread) of the process that
    listens on ``url``'s port, over the run and per accepted event. Unlike events/s, that
    figure does not depend on how many cores the broker and this client leave the server.
    """
    # Bodies are serialised before the clock starts: the client's JSON cost is not measured.
    bodies = [
        orjson.dumps(
            [
                {"user_id": f"load-{n}-{i % 500}", "item_id": f"item-{(i * 7 + n) % 5000}",
                 "type": "view"}
                for i in range(batch)
            ]
        )
        for n in range(16)
    ]  # fmt: skip
    pid = listening_pid(httpx.URL(url).port or 80) if server_cpu else None
    accepted = [0] * connections
    deadline = time.perf_counter() + seconds

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            n = 0
            while time.perf_counter() < deadline:
                r = http.post("/events", content=bodies[(k + n) % len(bodies)],
                              headers={"content-type": "application/json"})  # fmt: skip
                r.raise_for_status()
                accepted[k] += orjson.loads(r.content)["accepted"]
                n += 1

    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    events = sum(accepted)
    out: dict[str, Any] = {"events": events, "seconds": elapsed, "events_per_s": events / elapsed}
    if pid:
        cpu = cpu_seconds(pid) - cpu_before
        out |= {"server_cpu_s": cpu, "server_cpu_us_per_event": cpu / max(events, 1) * 1e6}
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far, all its threads together."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int:
    """The process listening on TCP ``port``: the socket's inode in /proc/net/tcp*, then
    the process holding that inode among its file descriptors (Linux only)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "0A":  # LISTEN
                    inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    raise SystemExit(f"no process listens on port {port}")


def freshness(url: str, ingest: str, samples: int, item: str) -> dict[str, Any]:
    """Event accepted (202 received) -> first response for that user that reflects it."""
    delays: list[float] = []
    with httpx.Client(base_url=url, timeout=10) as http, httpx.Client(timeout=10) as post:
        for _ in range(samples):
            user = f"fresh-{uuid.uuid4().hex[:12]}"
            event = {"user_id": user, "item_id": item, "type": "view"}
            r = post.post(ingest + "/events", json=event)
            r.raise_for_status()
            accepted = time.perf_counter()
            while True:
                body = http.get("/recommendations", params={"user_id": user, "count": 10}).json()
                if body["personalised"]:
                    delays.append((time.perf_counter() - accepted) * 1000)
                    break
                if time.perf_counter() - accepted > 5:
                    raise SystemExit(f"event for {user} not visible after 5 s")
    return {
        "samples": len(delays),
        "p50_ms": statistics.median(delays),
        "p99_ms": _percentile(delays, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ingest-batch", "freshness"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ingest", help="ingest URL when it is not --url")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--item", default="running-00-trail-shoe")
    parser.add_argument(
        "--server-cpu", action="store_true", help="ingest-batch: the server's CPU per event too"
    )
    a = parser.parse_args()
    if a.kind == "ingest-batch":
        out = ingest_batch(a.url, a.seconds, a.batch, a.connections, server_cpu=a.server_cpu)
    else:
        out = freshness(a.url, a.ingest or a.url, a.samples, a.item)
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
