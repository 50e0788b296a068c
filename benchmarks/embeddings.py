"""Embeddings end to end, printed as one JSON object: what ``reco train`` costs and what
the api pays per request for the ``embedding`` term and a similar list.

    python -m benchmarks.embeddings [--events 1000000] [--items 100000] [--dim 64]

Synthetic sessions over a long-tailed catalogue (``benchmarks.redis_store.Shop``'s item
draw, sessions of 2 to 12 items). ``train_s`` is the corpus, the training and the index
build; ``artifact_mb`` what the model store holds per version; ``load_ms`` what an api
replica spends swapping a version in; ``for_context_us`` one request's embedding term for
10 context items (the api's default) and ``similar_us`` one similar list, median and p99
over 2,000 calls, single thread. Run one algorithm at a time to keep the memory figure
(``peak_rss_mb``, the process's high-water mark) its own.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time

import orjson

from reco.embeddings.model import EmbeddingModel
from reco.embeddings.training import ALGORITHMS, TrainParams, corpus, train
from reco.events import Event
from reco.settings import DEFAULT_EVENT_WEIGHTS, EngineSettings


def sessions(events: int, items: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    clock = 1_700_000_000.0
    user = 0
    while len(out) < events:
        user += 1
        for _ in range(rng.randint(2, 12)):
            clock += 1.0
            item = f"i{int(items * rng.random() ** 3)}"
            out.append(
                Event(
                    f"e{len(out)}", f"u{user}", item, "view", clock, clock,
                    properties={"category": f"c{int(item[1:]) % 50}"},
                )
            )  # fmt: skip
    return out[:events]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 1),
        "p99": round(statistics.quantiles(samples, n=100)[98], 1),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    events = sessions(args.events, args.items, args.seed)
    started = time.perf_counter()
    data = corpus(events, DEFAULT_EVENT_WEIGHTS, 1800.0)
    params = TrainParams(algorithm=args.algorithm, dim=args.dim, epochs=args.epochs)
    model = train(data, params)
    train_s = time.perf_counter() - started
    artifact = model.to_bytes()
    started = time.perf_counter()
    loaded = EmbeddingModel.from_bytes(artifact, version=1)
    load_ms = (time.perf_counter() - started) * 1000
    rng = random.Random(args.seed + 1)
    known = loaded.item_ids
    context_us, similar_us = [], []
    candidates = EngineSettings().embedding_candidates
    for _ in range(2000):
        context = [(rng.choice(known), 0.9**n) for n in range(10)]
        t = time.perf_counter()
        loaded.for_context(context, candidates)
        context_us.append((time.perf_counter() - t) * 1e6)
        t = time.perf_counter()
        loaded.similar(rng.choice(known), 50)
        similar_us.append((time.perf_counter() - t) * 1e6)
    return {
        "algorithm": args.algorithm,
        "events": len(events),
        "sessions": len(data.sessions),
        "items": len(loaded),
        "dim": args.dim,
        "epochs": args.epochs,
        "train_s": round(train_s, 2),
        "artifact_mb": round(len(artifact) / 1e6, 1),
        "load_ms": round(load_ms, 1),
        "for_context_us": summary(context_us),
        "similar_us": summary(similar_us),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "python": sys.version.split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="als")
    parser.add_argument("--seed", type=int, default=1)
    print(orjson.dumps(run(parser.parse_args())).decode())


if __name__ == "__main__":
    main()
