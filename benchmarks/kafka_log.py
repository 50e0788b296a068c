"""Throughput of the Kafka event log adapters against a real single-node broker; prints JSON.

Produce: ``KafkaProducer.produce`` in batches (each call waits for every ack, as ingest
does for one request). Consume: ``KafkaConsumer.poll(2000, ...)`` in a fresh group until all
records are in, as the processor reads. Each compression codec gets its own topic, so the
bytes the broker stores per event can be compared too.

Run from the repository root (the broker comes from ``reco.local.servers``)::

    .venv/bin/python -m benchmarks.kafka_log [--events 100000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka

from reco.adapters.kafka_consumer import KafkaConsumer
from reco.adapters.kafka_producer import KafkaProducer
from reco.adapters.kafka_topics import ensure_topic
from reco.events import Event
from reco.local.servers import KafkaServer

CATEGORIES = ["shoes", "hats", "bags", "shirts", "coats", "socks", "belts", "watches"]
EVENT_TYPES = ["view"] * 12 + ["click"] * 4 + ["cart"] * 2 + ["purchase"]


def make_events(count: int, seed: int = 7) -> list[Event]:
    """Events shaped like the shop's: 10k users in sessions, 50k items, a category."""
    rng = random.Random(seed)
    now = time.time()
    events = []
    for n in range(count):
        user = rng.randrange(10_000)
        item = rng.randrange(50_000)
        events.append(
            Event(
                event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                user_id=f"user-{user}",
                item_id=f"item-{item}",
                type=rng.choice(EVENT_TYPES),
                timestamp=now + n / 1000,
                received_at=now + n / 1000,
                session_id=f"s-{user}-{n // 5000}",
                properties={"category": CATEGORIES[item % len(CATEGORIES)]},
            )
        )
    return events


def topic_bytes(server: KafkaServer, topic: str) -> int:
    """What the broker stores for ``topic`` (segment files of every partition)."""
    return sum(
        f.stat().st_size for d in Path(server.data_dir).glob(f"{topic}-*") for f in d.glob("*.log")
    )


def run_codec(
    server: KafkaServer, codec: str, events: list[Event], batch: int, partitions: int
) -> dict[str, Any]:
    topic = f"bench-{codec}-{uuid.uuid4().hex[:6]}"
    ensure_topic(server.bootstrap, topic, partitions)
    producer = KafkaProducer(server.bootstrap, topic, compression=codec, delivery_timeout_s=30)
    producer.produce(events[:1])  # connections and producer id: not part of the measure
    singles = []
    for event in events[1:201]:
        started = time.perf_counter()
        producer.produce([event])
        singles.append(time.perf_counter() - started)

    rest = events[201:]
    latencies = []
    started = time.perf_counter()
    for i in range(0, len(rest), batch):
        t0 = time.perf_counter()
        producer.produce(rest[i : i + batch])
        latencies.append(time.perf_counter() - t0)
    produce_s = time.perf_counter() - started
    producer.close()

    consumer = KafkaConsumer(server.bootstrap, topic, f"bench-{uuid.uuid4().hex[:6]}")
    received = 0
    polls = 0
    started = time.perf_counter()
    first_at = None
    while received < len(events):
        records = consumer.poll(2000, 1.0)
        polls += 1
        if records and first_at is None:
            first_at = time.perf_counter()
        received += len(records)
    done = time.perf_counter()
    consumer.close()

    ms = sorted(x * 1000 for x in latencies)
    return {
        "codec": codec,
        "produce_events_per_s": round(len(rest) / produce_s),
        "produce_batch_ms_p50": round(statistics.median(ms), 2),
        "produce_batch_ms_p99": round(ms[int(0.99 * (len(ms) - 1))], 2),
        "produce_single_event_ms_p50": round(statistics.median(singles) * 1000, 2),
        "consume_events_per_s": round(len(events) / (done - (first_at or started))),
        "consume_events_per_s_with_group_join": round(len(events) / (done - started)),
        "consume_mean_records_per_poll": round(len(events) / polls),
        "broker_bytes_per_event": round(topic_bytes(server, topic) / len(events), 1),
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in runs[0] if k != "codec"]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--codecs", default="lz4,zstd,none")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the codecs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    events = make_events(args.events)
    json_bytes = sum(len(e.to_json()) for e in events) / len(events)
    codecs = args.codecs.split(",")
    with KafkaServer(heap="1g") as server:
        # A round on a cold broker (JIT, first segments, the group coordinator's load) would
        # make whichever codec runs first look slow: warm up, then rotate the order per round.
        run_codec(server, "none", events[: len(events) // 5], args.batch, args.partitions)
        runs: dict[str, list[dict[str, Any]]] = {codec: [] for codec in codecs}
        for round_ in range(args.repeat):
            for codec in codecs[round_ % len(codecs) :] + codecs[: round_ % len(codecs)]:
                runs[codec].append(run_codec(server, codec, events, args.batch, args.partitions))
    results = [{"codec": codec, **median_of(rs)} for codec, rs in runs.items()]
    print(
        json.dumps(
            {
                "benchmark": "kafka_log",
                "events": args.events,
                "batch": args.batch,
                "partitions": args.partitions,
                "event_json_bytes": round(json_bytes, 1),
                "broker": "Apache Kafka, 1 KRaft node on 127.0.0.1 (reco.local.servers)",
                "repeat": args.repeat,
                "statistic": "median of the rounds",
                "confluent_kafka": metadata.version("confluent-kafka"),
                "librdkafka": confluent_kafka.libversion()[0],
                "cpus": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
