"""Micro-benchmark of the Redis feature store, printed as one JSON object (times in µs).

    python -m benchmarks.redis_store [--url redis://host:6379/0] [--batches 60]

``apply``: one processor batch of ``--events`` events (1000), built by the real signal code
(``apply_event``) over a synthetic shop, so the delta has the processor's shape: ~10 co-view
partners and ~3 transitions per event, profiles and sessions of the batch's users.
``recommendation_inputs``: one api read for a user, with the api's default sizes (10 context
items, 50 related per item, a pool of 50 popular items). ``rescale``: one landmark move over
everything the run stored, the rare full rewrite. Median and p99 over the timed calls;
the first ``--warmup`` batches fill the lists and are not timed. ``client`` is what the
caller waits; ``inside_redis`` (own server only) how long the script held Redis, during
which every other client, the api included, waits.

Without ``--url`` a throwaway redis-server is started (``reco.local.servers``) and
stopped after. With ``--url`` the run writes under a fresh prefix and deletes its keys after.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import redis

from benchmarks import redis_cost
from reco.adapters.redis_features import RedisFeatureStore
from reco.events import Event
from reco.settings import EngineSettings
from reco.signals import FeatureDelta, SignalConfig, UserProfile, apply_event

ITEMS = 20_000
USERS = 5_000
CATEGORIES = 50
EVENT_TYPES = ("view",) * 85 + ("click",) * 10 + ("cart",) * 4 + ("purchase",)


class Shop:
    """Users browsing a catalog with a long tail: a few items get most of the views."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = 1_700_000_000.0
        self.sequence = 0

    def item(self) -> str:
        return f"i{int(ITEMS * self.rng.random() ** 3)}"

    def events(self, count: int) -> list[Event]:
        out = []
        for _ in range(count):
            self.clock += 0.05
            self.sequence += 1
            item = self.item()
            out.append(
                Event(
                    event_id=f"e{self.sequence}",
                    user_id=f"u{self.rng.randrange(USERS)}",
                    item_id=item,
                    type=self.rng.choice(EVENT_TYPES),
                    timestamp=self.clock,
                    received_at=self.clock,
                    properties={"category": f"c{int(item[1:]) % CATEGORIES}"},
                )
            )
        return out


def fold(
    store: RedisFeatureStore, events: list[Event], offset: int, cfg: SignalConfig
) -> FeatureDelta:
    """What the processor does before it writes: load states, fold every event."""
    landmark = store.landmark()
    delta = FeatureDelta(landmark=events[0].timestamp if landmark is None else landmark)
    profiles, sessions = store.load_states({e.user_id for e in events}, ())
    for event in events:
        profile = profiles.setdefault(event.user_id, UserProfile(event.user_id))
        apply_event(delta, event, profile, sessions, event.properties["category"], cfg)
    delta.offsets = {0: offset}
    # Chained like the processor's batches: each starts where the store is.
    stored = store.applied_offsets()
    delta.base_offsets = {0: stored[0]} if 0 in stored else {}
    return delta


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1e6


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median": round(statistics.median(samples), 1),
        "p99": round(statistics.quantiles(samples, n=100)[98], 1),
    }


class ServerTime:
    """Time Redis itself spent: in EVALSHA (INFO commandstats), i.e. how long a script kept
    every other client waiting, and the counters of the api's reads. Only on a server of our
    own: it resets the statistics."""

    def __init__(self, url: str | None) -> None:
        self.client = None if url is None else redis.Redis.from_url(url, decode_responses=True)

    def reset(self) -> None:
        if self.client is not None:
            self.client.config_resetstat()

    def evalsha_us(self) -> float | None:
        """Microseconds spent in EVALSHA since :meth:`reset`."""
        if self.client is None:
            return None
        stats = self.client.info("commandstats").get("cmdstat_evalsha", {})
        return float(stats.get("usec", 0))

    def snapshot(self) -> redis_cost.Snapshot | None:
        """The server's counters now (:mod:`benchmarks.redis_cost`)."""
        return None if self.client is None else redis_cost.snapshot(self.client)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def bench_apply(
    store: RedisFeatureStore, args: argparse.Namespace, server: ServerTime
) -> dict[str, Any]:
    cfg = SignalConfig.from_settings(EngineSettings())
    shop = Shop(seed=1)
    client_us: list[float] = []
    server_us: list[float] = []
    pairs: list[int] = []
    for batch in range(args.warmup + args.batches):
        delta = fold(store, shop.events(args.events), (batch + 1) * args.events, cfg)
        server.reset()
        elapsed = timed(functools.partial(store.apply, delta))
        inside = server.evalsha_us()
        if batch >= args.warmup:
            client_us.append(elapsed)
            pairs.append(sum(map(len, delta.coview.values())))
            if inside is not None:
                server_us.append(inside)
    out = {"client": summary(client_us), "coview_pairs_per_batch": statistics.median(pairs)}
    if server_us:
        out["inside_redis"] = summary(server_us)
    return out


def bench_reads(
    url: str, prefix: str, args: argparse.Namespace, server: ServerTime
) -> dict[str, Any]:
    """The api's read with its default sizes: without and with the neighbour search, with
    no list cache (every list read from Redis), and as an api replica reads by default (the
    per-process list cache on; users drawn at random, so how often it hits depends on how
    many users share items). With a server of our own, also Redis's own time per read
    (``redis_us``: commands; ``redis_cpu_us``: the server process's CPU, network included)."""
    settings = EngineSettings()
    rng = random.Random(2)
    out: dict[str, Any] = {}
    uncached = RedisFeatureStore.from_url(url, prefix=prefix)
    cached = RedisFeatureStore.from_url(
        url,
        prefix=prefix,
        list_cache_size=settings.feature_cache_size,
        list_cache_ttl_s=settings.feature_cache_ttl_s,
    )
    for label, store, sample, k in (
        ("without_neighbours", uncached, 0, 0),
        ("with_neighbours", uncached, settings.neighbour_sample, settings.neighbour_k),
        ("with_neighbours_cached", cached, settings.neighbour_sample, settings.neighbour_k),
    ):

        def read(store: RedisFeatureStore = store, sample: int = sample, k: int = k) -> None:
            store.recommendation_inputs(
                user_id=f"u{rng.randrange(USERS)}",
                session_id=None,
                context_items=settings.context_items,
                related_per_item=settings.related_per_item,
                popular=50,
                category=None,
                neighbour_sample=sample,
                neighbour_k=k,
            )

        before = server.snapshot()
        out[label] = summary([timed(read) for _ in range(args.requests)])
        after = server.snapshot()
        if before is not None and after is not None:
            # The reads run no script, so every command counts (an empty calibration).
            command = redis_cost.command_usec(before, after, redis_cost.Calibration())
            out[label]["redis_us"] = round(command / args.requests, 1)
            cpu = redis_cost.cpu_usec(before, after)
            out[label]["redis_cpu_us"] = round(cpu / args.requests, 1)
    uncached.close()
    cached.close()
    return out


def run(url: str, prefix: str, args: argparse.Namespace, own_server: bool) -> dict[str, Any]:
    store = RedisFeatureStore.from_url(url, prefix=prefix)
    server = ServerTime(url if own_server else None)
    try:
        applied = bench_apply(store, args, server)
        reads = bench_reads(url, prefix, args, server)
        landmark = (store.landmark() or 0.0) + 3600.0
        rescale_us = timed(lambda: store.rescale(landmark, 0.99, 0.98))
    finally:
        server.close()
        store.close()
    return {
        f"apply_{args.events}_events_us": applied,
        "recommendation_inputs_us": reads,
        "rescale_all_us": round(rescale_us),
    }


@contextmanager
def redis_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from reco.local.servers import RedisServer

    with RedisServer() as server:
        yield server.url


def describe(url: str, prefix: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        info = client.info()
        keys = list(client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000))
        entries = sum(client.zcard(k) for k in keys if client.type(k) == "zset")
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        return {
            "redis_version": info["redis_version"],
            "keys": len(keys),
            "zset_entries": entries,
            "used_memory_mb": round(info["used_memory"] / 2**20, 1),
        }
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="an existing Redis; default: start a throwaway one")
    parser.add_argument("--events", type=int, default=1000, help="events per batch")
    parser.add_argument("--batches", type=int, default=60, help="timed batches")
    parser.add_argument("--warmup", type=int, default=20, help="untimed batches first")
    parser.add_argument("--requests", type=int, default=2000, help="timed api reads")
    args = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    with redis_url(args.url) as url:
        result = run(url, prefix, args, own_server=args.url is None)
        result["store"] = describe(url, prefix)
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
