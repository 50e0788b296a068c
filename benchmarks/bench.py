"""``make bench``: throughput, latency and freshness of the engine, printed as one JSON object
and written to ``benchmarks/results/``.

Each figure is the median of ``--repeats`` runs. Load comes from other processes on
127.0.0.1 (wrk for closed-loop HTTP load, ``benchmarks.load`` for batches, freshness and an
open-loop fixed rate). Ratios compare figures of the same run under the same load, so that
they mean something on a noisy machine:

- ``api_ceiling_rps``: ``GET /popular?count=1`` of the same server: one store read (one Redis
  round trip in the stack), the same framework, middleware and serialisation.
- ``api_trivial_ceiling_rps``: a reference FastAPI app served as ``reco api`` is
  (``benchmarks.trivial``): one Redis pipeline per request against the stack's Redis, or a
  constant list for the embedded shape; the open-loop run is at half its rate.

Redis's own cost per recommendation and per applied event comes from its counters
(``benchmarks.redis_cost``). ``ranker``: what the learned ranker costs to train and adds to
a request, with and without it (``benchmarks.ranker``, in process; ``--no-ranker`` skips it).
``experiments``: what an online experiment adds to a request and to the processor
(``benchmarks.experiments``, in process; ``--no-experiments`` skips it).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks import load as load_module
from benchmarks import redis_cost
from benchmarks.redis_cost import Calibration

RESULTS = Path(__file__).parent / "results"
MODES = ("embedded", "stack", "cluster")
VEGETA = str(Path(os.environ.get("RECO_CACHE", Path.home() / ".cache/reco-engine")) / "bin/vegeta")
CONCURRENCY = 16
# Events the processors catch up on: enough that the group's join is a small part of it.
BACKLOG = 200_000

POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user_id": "wrk-user", "item_id": "running-00-cap", "type": "view"}'
"""
USERS_LUA = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/recommendations?count=10&user_id=shopper-" ..
                    string.format("%03d", n % 299 + 1))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def embedded_server(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "reco.cli", "--log-level", "warning", "dev", "--demo",
           "--port", str(port), "--data-dir", str(data_dir)]  # fmt: skip
    with _server(cmd, port, "the engine") as url:
        yield url


@contextmanager
def trivial_server(redis_url: str | None, log_level: str) -> Iterator[str]:
    """The reference app of ``benchmarks.trivial`` in its own process; with ``redis_url``,
    one Redis pipeline per request."""
    port = _free_port()
    cmd = [sys.executable, "-m", "benchmarks.trivial", "--port", str(port),
           "--log-level", log_level]  # fmt: skip
    if redis_url is not None:
        cmd += ["--redis-url", redis_url]
    with _server(cmd, port, "the trivial reference app") as url:
        yield url


@contextmanager
def _server(cmd: list[str], port: int, what: str) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parent.parent
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def wrk(url: str, path: str, script: str, seconds: float) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    duration = f"-d{max(1, round(seconds))}s"
    cmd = ["wrk", "-t2", f"-c{CONCURRENCY}", duration, "--latency", "-s", f.name, url + path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors on {path}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    pct = {q: _ms(v) for q, v in re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, flags=re.MULTILINE)}
    return {"rps": rps, "requests": requests, "p50_ms": pct["50"], "p99_ms": pct["99"]}


def vegeta(url: str, paths: list[str], rate: int, seconds: float) -> dict[str, float]:
    """Open loop: requests leave at ``rate``/s whatever the server does, so a slow response
    shows in the latency instead of slowing the client (no coordinated omission)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"GET {url}{p}\n" for p in paths))
    attack = subprocess.run(
        [VEGETA, "attack", f"-targets={f.name}", f"-rate={rate}", f"-duration={seconds}s",
         "-max-workers=64"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    os.unlink(f.name)
    report = orjson.loads(
        subprocess.run(
            [VEGETA, "report", "-type=json"], input=attack, capture_output=True, check=True
        ).stdout
    )
    lat = report["latencies"]
    return {
        "rps": report["throughput"],
        "success": report["success"],
        "p50_ms": lat["50th"] / 1e6,
        "p99_ms": lat["99th"] / 1e6,
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load(kind: str, url: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.load", kind, "--url", url, *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = orjson.loads(out)
    return result


def median_of(repeats: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    runs = [run() for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def medians_of(repeats: int, **runs: Callable[[], dict[str, float]]) -> dict[str, dict[str, float]]:
    """Like :func:`median_of` for several runs, interleaved (a, b, a, b, ...) so that a slow
    spell of the machine weighs on each of them alike."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return {
        name: {k: statistics.median(r[k] for r in done) for k in done[0]}
        for name, done in results.items()
    }


def with_server_cpu(
    run: Callable[[], dict[str, float]], url: str
) -> Callable[[], dict[str, float]]:
    """``run``, adding the CPU microseconds (user + system, all threads) that the process
    serving ``url`` spent per request ``run`` completed: unlike req/s, a cost that does not
    depend on how much of the cores the load generator and the backends leave it."""
    pid = load_module.listening_pid(httpx.URL(url).port or 80)

    def measured() -> dict[str, float]:
        before = load_module.cpu_seconds(pid)
        out = run()
        return {
            **out,
            "server_cpu_us": (load_module.cpu_seconds(pid) - before) / out["requests"] * 1e6,
        }

    return measured


def with_redis_cost(
    run: Callable[[], dict[str, float]], url: str, calibration: Calibration, per: str
) -> Callable[[], dict[str, float]]:
    """``run``, adding Redis's microseconds per unit of ``run()[per]`` (requests, events):
    ``redis_us`` from ``INFO commandstats`` (top-level commands only), ``redis_cpu_us`` from
    ``INFO cpu``; see ``benchmarks.redis_cost``."""

    def measured() -> dict[str, float]:
        r = redis_cost.client(url)
        try:
            before = redis_cost.snapshot(r)
            out = run()
            after = redis_cost.snapshot(r)
        finally:
            r.close()
        units = out[per]
        return {
            **out,
            "redis_us": redis_cost.command_usec(before, after, calibration) / units,
            "redis_cpu_us": redis_cost.cpu_usec(before, after) / units,
        }

    return measured


def processor_throughput(events: int) -> float:
    """Events/s of the embedded processor rebuilding its features from a log of ``events``."""
    from reco.demo import generate
    from reco.embedded import EmbeddedEngine
    from reco.events import EventValidator
    from reco.settings import EmbeddedSettings

    with tempfile.TemporaryDirectory() as tmp:
        settings = EmbeddedSettings(data_dir=Path(tmp))
        shop = generate(seed=11, users=max(10, events // 15), now=time.time())
        validator = EventValidator(settings.event_weights, settings.max_future_skew_s)
        stamped = [validator.validate(e) for e in shop.events[:events]]
        engine = EmbeddedEngine.open(settings)
        for start in range(0, len(stamped), 5000):
            engine.producer.produce(stamped[start : start + 5000])
        engine.close()
        engine = EmbeddedEngine.open(settings)
        started = time.perf_counter()
        engine.start()
        engine.processor.wait_caught_up(600)
        elapsed = time.perf_counter() - started
        engine.close()
    return len(stamped) / elapsed


def measure_http(
    api: str,
    ingest: str,
    seconds: float,
    repeats: int,
    *,
    trivial: str,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """The figures both modes share, against an api URL and an ingest URL; ``trivial`` is the
    reference app's URL, ``redis_url`` the Redis whose cost per recommendation to measure."""
    users = [f"/recommendations?count=10&user_id=shopper-{n:03d}" for n in range(1, 300)]

    def wrk_run() -> dict[str, float]:
        return wrk(api, "/", USERS_LUA, seconds)

    reco_run = with_server_cpu(wrk_run, api)

    if redis_url is not None:
        calibration = redis_cost.calibrate(redis_url, lambda: _get_all(api, users[:50]))
        reco_run = with_redis_cost(reco_run, redis_url, calibration, per="requests")
    runs = medians_of(repeats, reco=reco_run, trivial=lambda: wrk(trivial, "/", USERS_LUA, seconds))
    reco, reference = runs["reco"], runs["trivial"]
    ceiling = median_of(repeats, lambda: wrk(api, "/popular?count=1", "", seconds))
    rate = max(1, round(reference["rps"] / 2))
    fixed = median_of(repeats, lambda: vegeta(api, users, rate, seconds))
    fresh = load("freshness", api, "--ingest", ingest, "--samples", "300")
    single = median_of(repeats, lambda: wrk(ingest, "/events", POST_LUA, seconds))
    batch_args = ("--seconds", str(seconds), "--server-cpu")
    batch = median_of(repeats, lambda: load("ingest-batch", ingest, *batch_args))
    return {
        "ingest_single_events_per_s": round(single["rps"]),
        "ingest_batch_events_per_s": round(batch["events_per_s"]),
        "ingest_cpu_us_per_event": round(batch["server_cpu_us_per_event"], 2),
        "freshness_p50_ms": round(fresh["p50_ms"], 2),
        "freshness_p99_ms": round(fresh["p99_ms"], 2),
        "api_concurrency": CONCURRENCY,
        "api_rps": round(reco["rps"]),
        "api_p50_ms": round(reco["p50_ms"], 2),
        "api_p99_ms": round(reco["p99_ms"], 2),
        "api_ceiling_rps": round(ceiling["rps"]),
        "api_rps_over_ceiling": round(reco["rps"] / ceiling["rps"], 3),
        "api_trivial_ceiling_rps": round(reference["rps"]),
        "api_rps_over_trivial_ceiling": round(reco["rps"] / reference["rps"], 3),
        "api_cpu_us_per_recommendation": round(reco["server_cpu_us"]),
        **(
            {
                "redis_us_per_recommendation": round(reco["redis_us"], 1),
                "redis_cpu_us_per_recommendation": round(reco["redis_cpu_us"], 1),
            }
            if redis_url is not None
            else {}
        ),
        "api_fixed_rate_target_rps": rate,
        "api_fixed_rate_rps": round(fixed["rps"]),
        "api_fixed_rate_p50_ms": round(fixed["p50_ms"], 2),
        "api_fixed_rate_p99_ms": round(fixed["p99_ms"], 2),
        "api_fixed_rate_success": fixed["success"],
    }


def _get_all(url: str, paths: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in paths:
            http.get(path).raise_for_status()


def bench_embedded(seconds: float, repeats: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_server(Path(tmp)) as url,
        trivial_server(None, "warning") as trivial,
    ):
        out = measure_http(url, url, seconds, repeats, trivial=trivial)
    out["processor_events_per_s"] = round(
        statistics.median(processor_throughput(100_000) for _ in range(repeats))
    )
    return out


def bench_stack(seconds: float, repeats: int) -> dict[str, Any]:
    from reco.demo import generate
    from reco.local.stack import local_stack, post_events

    with tempfile.TemporaryDirectory() as tmp, local_stack(Path(tmp)) as stack:
        api, ingest = stack["api"].url, stack["ingest"].url
        redis_url = stack.env["RECO_REDIS_URL"]
        shop = generate()
        httpx.put(api + "/items", json=shop.items, timeout=60).raise_for_status()
        post_events(ingest, shop.events)
        # The processor idle before the api is measured: its writes are not the api's cost.
        one = [stack["processor"]]
        _wait_until(lambda: _caught_up(one, 0, _partitions(stack)), one)
        with trivial_server(redis_url, "info") as trivial:
            out = measure_http(api, ingest, seconds, repeats, trivial=trivial, redis_url=redis_url)
        out.update(processor_figures(stack, repeats, Path(tmp)))
    return out


def bench_cluster(seconds: float, repeats: int) -> dict[str, Any]:
    """The stack on a Redis Cluster (3 masters, a replica each): the api under the same wrk
    load and the processors catching up, with Redis's CPU summed over every node (masters
    and the replicas copying them) per request and per event. ``INFO commandstats`` is not
    read here: its calibration (``benchmarks.redis_cost``) watches one server."""
    from reco.demo import generate
    from reco.local.redis_cluster import RedisClusterServer
    from reco.local.stack import ServiceProcess, local_stack, post_events

    with (
        tempfile.TemporaryDirectory() as tmp,
        local_stack(Path(tmp), redis_cluster=True) as stack,
    ):
        api, ingest = stack["api"].url, stack["ingest"].url
        if not isinstance(stack.redis, RedisClusterServer):
            raise SystemExit("local_stack(redis_cluster=True) did not start a Redis Cluster")
        nodes = list(stack.redis)
        shop = generate()
        httpx.put(api + "/items", json=shop.items, timeout=60).raise_for_status()
        post_events(ingest, shop.events)
        one = [stack["processor"]]
        _wait_until(lambda: _caught_up(one, 0, _partitions(stack)), one)

        def reco_run() -> dict[str, float]:
            return wrk(api, "/", USERS_LUA, seconds)

        reco = median_of(
            repeats, with_cluster_cpu(with_server_cpu(reco_run, api), nodes, "requests")
        )
        single = median_of(
            repeats, with_cluster_cpu(lambda: catch_up(stack, one, BACKLOG), nodes, "events")
        )
        (Path(tmp) / "processor-2").mkdir(exist_ok=True)
        second = ServiceProcess("processor", stack.env, Path(tmp) / "processor-2")
        try:
            pair = median_of(repeats, lambda: catch_up(stack, [*one, second], BACKLOG))
        finally:
            second.stop()
    return {
        "api_concurrency": CONCURRENCY,
        "api_rps": round(reco["rps"]),
        "api_p50_ms": round(reco["p50_ms"], 2),
        "api_p99_ms": round(reco["p99_ms"], 2),
        "api_cpu_us_per_recommendation": round(reco["server_cpu_us"]),
        "redis_cpu_us_per_recommendation": round(reco["redis_cpu_us"], 1),
        "processor_events_per_s": round(single["events_per_s"]),
        "processor_cpu_us_per_event": round(single["cpu_us_per_event"], 1),
        "redis_cpu_us_per_event": round(single["redis_cpu_us"], 1),
        "processor_2_events_per_s": round(pair["events_per_s"]),
        "processor_2_batches_refused": round(pair["batches_refused"]),
        "processor_2_cpu_us_per_event": round(pair["cpu_us_per_event"], 1),
    }


def with_cluster_cpu(
    run: Callable[[], dict[str, float]], nodes: list[Any], per: str
) -> Callable[[], dict[str, float]]:
    """``run``, adding the CPU microseconds every node of a Redis Cluster spent per unit of
    ``run()[per]`` (``INFO cpu``, summed over the nodes)."""

    def total() -> float:
        seconds = 0.0
        for node in nodes:
            cpu = node.info("cpu") or {}
            seconds += float(cpu.get("used_cpu_user", 0)) + float(cpu.get("used_cpu_sys", 0))
        return seconds

    def measured() -> dict[str, float]:
        before = total()
        out = run()
        return {**out, "redis_cpu_us": (total() - before) / out[per] * 1e6}

    return measured


def processor_figures(stack: Any, repeats: int, log_dir: Path) -> dict[str, Any]:
    """One processor, then two on the same topic, catching up on ``BACKLOG`` events each
    time; the Redis cost per applied event of the one."""
    from reco.local.stack import ServiceProcess

    redis_url = stack.env["RECO_REDIS_URL"]
    one = [stack["processor"]]
    calibration = redis_cost.calibrate(redis_url, lambda: catch_up(stack, one, 500))
    single = median_of(
        repeats,
        with_redis_cost(lambda: catch_up(stack, one, BACKLOG), redis_url, calibration, "events"),
    )
    (log_dir / "processor-2").mkdir(exist_ok=True)
    second = ServiceProcess("processor", stack.env, log_dir / "processor-2")
    try:
        pair = median_of(repeats, lambda: catch_up(stack, [*one, second], BACKLOG))
    finally:
        second.stop()
    return {
        "processor_events_per_s": round(single["events_per_s"]),
        "processor_cpu_us_per_event": round(single["cpu_us_per_event"], 1),
        "redis_us_per_event": round(single["redis_us"], 1),
        "redis_cpu_us_per_event": round(single["redis_cpu_us"], 1),
        "processor_2_events_per_s": round(pair["events_per_s"]),
        "processor_2_batches_refused": round(pair["batches_refused"]),
        "processor_2_cpu_us_per_event": round(pair["cpu_us_per_event"], 1),
    }


def catch_up(stack: Any, processors: list[Any], events: int) -> dict[str, float]:
    """Events/s of ``processors`` (one consumer group) catching up on ``events`` produced
    while they were stopped, from when the group is stable with a share of the partitions
    on every member (the join is not what is measured) to when every partition's lag is 0
    and all the events are applied; and the batches the store refused meanwhile (a
    compare-and-set on the partitions' offsets: two writers of one partition)."""
    from reco.demo import generate
    from reco.local.stack import post_events

    for processor in processors:
        processor.stop()
    shop = generate(seed=int(time.time()), users=max(10, events // 15), now=time.time())
    # Fresh event ids: the demo's are deterministic and a repeat would be skipped as such.
    fresh = [{k: v for k, v in e.items() if k != "event_id"} for e in shop.events[:events]]
    post_events(stack["ingest"].url, fresh)
    for processor in processors:
        processor.start(wait=False)
    for processor in processors:
        processor.wait_ready()
    _wait_until(lambda: _every_member_assigned(stack, len(processors)), processors)
    applied_before = sum(p.metric("events_processed_total") for p in processors)
    cpu_before = sum(load_module.cpu_seconds(p.proc.pid) for p in processors)
    started = time.perf_counter()
    _wait_until(lambda: _caught_up(processors, len(fresh), _partitions(stack)), processors)
    elapsed = time.perf_counter() - started
    cpu = sum(load_module.cpu_seconds(p.proc.pid) for p in processors) - cpu_before
    refused = sum(p.metric("processor_batches_refused_total") for p in processors)
    timed = len(fresh) - applied_before
    return {
        # Redis's cost is read around the whole call, so it is per event of the backlog.
        "events": len(fresh),
        "events_per_s": timed / elapsed,
        "batches_refused": refused,
        "cpu_us_per_event": cpu / timed * 1e6 if timed > 0 else float("nan"),
    }


def _every_member_assigned(stack: Any, members: int) -> bool:
    held = stack.group_assignment()
    return len(held) == members and all(held)


def _partitions(stack: Any) -> int:
    return int(stack.env["RECO_TOPIC_PARTITIONS"])


def _caught_up(processors: list[Any], events: int, partitions: int) -> bool:
    """``events`` applied since the processors started, and every partition's lag 0. A
    member keeps the last lag of a partition taken from it, so a partition is done when any
    member says 0: no event is produced while they catch up, so lag only falls."""
    if sum(p.metric("events_processed_total") for p in processors) < events:
        return False
    for partition in range(partitions):
        label = str(partition)
        lags = [v for p in processors for v in p.samples("consumer_lag_records", partition=label)]
        if not lags or min(lags) > 0:
            return False
    return True


def _wait_until(done: Callable[[], bool], processors: list[Any], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            state = "; ".join(
                f"{p.url}: applied {p.metric('events_processed_total'):.0f}, lag "
                f"{p.samples('consumer_lag_records')}, refused "
                f"{p.metric('processor_batches_refused_total'):.0f}"
                for p in processors
            )
            raise SystemExit(f"the processors did not catch up within {timeout_s:g} s: {state}")
        time.sleep(0.2)


def machine() -> dict[str, Any]:
    model = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--mode",
        choices=["embedded", "stack", "cluster", "all"],
        default="all",
        help="cluster: the stack on a 3-master Redis Cluster",
    )
    parser.add_argument("--no-ranker", action="store_true", help="skip the ranker's figures")
    parser.add_argument(
        "--no-experiments", action="store_true", help="skip the experiments' figures"
    )
    args = parser.parse_args()
    modes = set(MODES) if args.mode == "all" else {args.mode}
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seconds_per_run": args.seconds,
        "repeats": args.repeats,
        "embedded": bench_embedded(args.seconds, args.repeats) if "embedded" in modes else None,
        "stack": bench_stack(args.seconds, args.repeats) if "stack" in modes else None,
        "cluster": bench_cluster(args.seconds, args.repeats) if "cluster" in modes else None,
        "ranker": None if args.no_ranker else bench_ranker(),
        "experiments": None if args.no_experiments else bench_experiments(),
    }
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = result["date"].replace(":", "").replace("-", "")
    for name in (f"{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(text + "\n")
    render_docs(result)


def bench_ranker() -> dict[str, Any]:
    """``benchmarks.ranker`` at its defaults (200,000 events, 200 candidates; ~1 min)."""
    from benchmarks import ranker

    return ranker.run(ranker.parser().parse_args([]))


def bench_experiments() -> dict[str, Any]:
    """``benchmarks.experiments`` at its defaults (200,000 events, 4,000 requests; ~1 min)."""
    from benchmarks import experiments

    return experiments.run(experiments.parser().parse_args([]))


TARGETS = {
    "ingest_batch_events_per_s": ">= 100,000",
    "processor_events_per_s": ">= 50,000",
    "freshness_p99_ms": "<= 100",
    "api_rps_over_ceiling": ">= 0.7",
    "api_rps_over_trivial_ceiling": ">= 0.7",
    "redis_us_per_recommendation": "<= 100",
    "processor_2_events_per_s": "> processor_events_per_s",
    "ingest_cpu_us_per_event": "<= 10 (one core: >= 100,000 events/s)",
    "processor_cpu_us_per_event": "<= 20 (one core: >= 50,000 events/s)",
    "api_fixed_rate_p99_ms": "<= 2 (embedded), <= 10 (stack)",
}
DOCS = Path(__file__).parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def render_docs(result: dict[str, Any]) -> None:
    """Put the table of ``result`` between the markers of docs/benchmarks.md."""
    modes = [m for m in MODES if result.get(m)]
    keys = list(dict.fromkeys(k for m in modes for k in result[m]))
    lines = [
        f"Measured {result['date']} on {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores, Python {result['machine']['python']}; "
        f"median of {result['repeats']} runs of {result['seconds_per_run']:g} s.",
        "",
        "| figure | " + " | ".join(modes) + " | target |",
        "| --- | " + " | ".join("---:" for _ in modes) + " | --- |",
    ]
    for key in keys:
        cells = [f"{result[m].get(key, ''):,}" if isinstance(result[m].get(key), int)
                 else str(result[m].get(key, "")) for m in modes]  # fmt: skip
        lines.append(f"| `{key}` | " + " | ".join(cells) + f" | {TARGETS.get(key, '')} |")
    ranked = result.get("ranker")
    if ranked:
        added, rerank = ranked["request_us_added"], ranked["rerank_us"]
        bare = ranked["rerank_us_without_catalog"]
        lines += [
            "",
            f"Ranker ({ranked['events']:,} synthetic events, in process): a request adds "
            f"{added['median']:,} µs median, {added['p99']:,} µs p99 with it; reranking "
            f"200 candidates {rerank['200']['p99']:,} µs p99, 500 candidates "
            f"{rerank['500']['p99']:,} µs p99 (target: <= 1,000 µs p99 at ~500; without the "
            f"catalog features {bare['200']['p99']:,} and {bare['500']['p99']:,}); training "
            f"{ranked['per_million_events_s']:,} s per million events.",
        ]
    ab = result.get("experiments")
    if ab:
        added, processor = ab["request_us_added"], ab["processor"]
        lines += [
            "",
            f"Experiments ({ab['events']:,} synthetic events, embedded, in process): a request "
            f"in an experiment adds {added['median']:,} µs median, {added['p99']:,} µs p99 "
            "(assignment, id, variant settings, impression queued); the processor takes "
            f"{processor['impressions_us_per_record']:,} µs per impression record and "
            f"{processor['attributed_clicks_us_per_record']:,} µs per attributed click, "
            f"against {processor['plain_views_us_per_record']:,} µs per plain view.",
        ]
    text = DOCS.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOCS.write_text(f"{head}{BEGIN}\n" + "\n".join(lines) + f"\n{END}{tail}")


if __name__ == "__main__":
    main()
