"""The ranker's costs, printed as one JSON object: what ``reco train --ranker`` spends per
event and what it adds to a request.

    python -m benchmarks.ranker [--events 200000] [--items 20000] [--candidates 200]

Synthetic sessions over a long-tailed catalogue (``benchmarks.embeddings.sessions``), each
event carrying its item's category (one of 50) and price, so that the catalog features are
computed as in a shop with a catalog. The
ranker is trained as ``reco train --ranker`` trains it: a replay of the events through the
engine (in-memory store, the api's ``Recommender``) recording at most ``--max-requests``
requests, then LambdaRank. ``replay_s`` and ``fit_s`` are that replay and the fit;
``per_million_events_s`` scales their sum linearly to a million events (the replay is one
request per recorded event plus one processor batch per event). Then 2,000 requests from
the store's own users, each timed with the ranker and without it (in random order, same
user), single thread: ``request_us`` median and p99 of each and of the difference;
``rerank_us`` the reranking alone (the catalog read, the features and the model) at 200
and 500 candidates; ``rerank_us_without_catalog`` the same with a model trained without
the catalog features (``RECO_RANKER_CATALOG=false``: no catalog read).
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from dataclasses import replace

import orjson

from benchmarks.embeddings import sessions, summary
from reco.evaluation.engine import EngineSystem
from reco.events import Event
from reco.ranking.training import RankerParams, fit, replay_examples
from reco.settings import EngineSettings


def with_catalog(events: list[Event]) -> list[Event]:
    """``events`` with their item's category and price in their properties."""
    out = []
    for e in events:
        n = int(e.item_id[1:])
        properties = {"category": f"c{n % 50}", "price": 5.0 + (n * 7919) % 500}
        out.append(replace(e, properties=properties))
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    events = with_catalog(sessions(args.events, args.items, args.seed))
    settings = EngineSettings()
    params = RankerParams(candidates=args.candidates, max_requests=args.max_requests)
    started = time.perf_counter()
    examples = replay_examples(
        events, settings, candidates=params.candidates, max_requests=params.max_requests
    )
    replay_s = time.perf_counter() - started
    model, trained = fit(examples, params)
    engine = EngineSystem(settings)
    engine.fit(events, online=True)
    rng = random.Random(args.seed + 1)
    users = list({e.user_id for e in events[-50_000:]})
    with_us, without_us, added_us = [], [], []
    for _ in range(args.requests):
        user = rng.choice(users)
        timings = {}
        for on in (True, False) if rng.random() < 0.5 else (False, True):
            engine.ranker = model if on else None
            t = time.perf_counter()
            engine.rank(session_id=None, user_id=user, n=20, exclude=frozenset())
            timings[on] = (time.perf_counter() - t) * 1e6
        with_us.append(timings[True])
        without_us.append(timings[False])
        added_us.append(timings[True] - timings[False])
    engine.ranker = model
    rerank_us: dict[str, dict[str, float]] = {}
    without_catalog_us: dict[str, dict[str, float]] = {}
    for candidates in (200, 500):
        for catalog, out in ((True, rerank_us), (False, without_catalog_us)):
            wide = model.reranking(candidates)
            # The cost of a model trained without the catalog features: the same trees,
            # the catalog read and its columns left out as the api then leaves them.
            wide.catalog = catalog
            samples = []
            for _ in range(args.requests // 2):
                context, ranked = engine.candidates(user_id=rng.choice(users))
                t = time.perf_counter()
                wide.rerank(ranked, context, engine.catalog_entries, engine.now)
                samples.append((time.perf_counter() - t) * 1e6)
            out[str(candidates)] = summary(samples)
    scale = 1e6 / len(events)
    return {
        "events": len(events),
        "items": args.items,
        "candidates": args.candidates,
        "recorded_requests": trained["examples"],
        "rows": trained["rows"],
        "rounds": trained["rounds"],
        "replay_s": round(replay_s, 1),
        "fit_s": trained["fit_s"],
        "per_million_events_s": round((replay_s + trained["fit_s"]) * scale, 1),
        "valid_ndcg20_weighted_sum": trained["valid_ndcg20_weighted_sum"],
        "valid_ndcg20_ranker": trained["valid_ndcg20_ranker"],
        "request_us_with_ranker": summary(with_us),
        "request_us_without_ranker": summary(without_us),
        "request_us_added": summary(added_us),
        "rerank_us": rerank_us,
        "rerank_us_without_catalog": without_catalog_us,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "python": sys.version.split()[0],
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    return parser


def main() -> None:
    print(orjson.dumps(run(parser().parse_args())).decode())


if __name__ == "__main__":
    main()
