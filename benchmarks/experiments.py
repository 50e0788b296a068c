"""What an online experiment costs, printed as one JSON object: per request in the api and
per impression record in the processor.

    python -m benchmarks.experiments [--events 200000] [--items 20000] [--requests 4000]

Embedded mode's backends (SQLite log, in-memory store): synthetic sessions
(``benchmarks.embeddings.sessions``) applied by the processor, then ``--requests``
recommendations from the store's own users, each timed by a ``Recommender`` outside any
experiment and by one whose users are all in a two-variant experiment (same user, random
order, response cache off, single thread): assignment, the id, the variant's settings and
the impression record queued (its write to the log is timed with the processor's work).
``request_us`` gives the median and p99 of each and of the paired difference. Then
``processor``: the time to write and apply the impression records the experiment made,
then as many clicks naming them, then as many plain views (``us_per_record`` each; each
includes the processor's wait for the log, so it is an upper bound).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from benchmarks.embeddings import sessions, summary
from reco.api import Recommender
from reco.api.impressions import ImpressionLog
from reco.embedded import EmbeddedEngine
from reco.events import Event
from reco.metrics import EmbeddedMetrics
from reco.rules import RuleOptions
from reco.settings import EmbeddedSettings, Experiment


class _Kept:
    """An event producer that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def produce(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None


def _caught_up(engine: EmbeddedEngine, timeout_s: float = 600.0) -> float:
    """Seconds until the store has applied every record of the log."""
    started = time.perf_counter()
    end = engine.producer.end_offset()
    while engine.store.applied_offsets().get(0, 0) < end:
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError("the processor did not catch up")
        time.sleep(0.001)
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, object]:
    events = sessions(args.events, args.items, args.seed)
    experiment = Experiment.model_validate(
        {
            "name": "bench",
            "variants": [{"name": "a"}, {"name": "b", "settings": {"history_decay": 0.8}}],
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = EmbeddedSettings(data_dir=Path(tmp), cache_ttl_s=0)
        # The processor knows the experiment; one of the two recommenders serves none.
        ab_settings = settings.model_copy(update={"experiments": [experiment]})
        engine = EmbeddedEngine.open(ab_settings)
        try:
            engine.producer.produce(events)
            engine.start()
            _caught_up(engine)
            metrics = EmbeddedMetrics()
            plain = Recommender(engine.store, engine.catalog, settings, metrics)
            # The records are kept aside while requests are timed, and written after: the
            # processor applying them meanwhile would take the GIL from the requests.
            kept = _Kept()
            log = ImpressionLog(kept, metrics)
            in_ab = Recommender(engine.store, engine.catalog, ab_settings, metrics, impressions=log)
            rng = random.Random(args.seed + 1)
            users = list({e.user_id for e in events[-50_000:]})
            options = RuleOptions()
            with_us, without_us, added_us = [], [], []
            shown: list[tuple[str, str, str]] = []
            for _ in range(args.requests):
                user = rng.choice(users)
                timings = {}
                for on in (True, False) if rng.random() < 0.5 else (False, True):
                    recommender = in_ab if on else plain
                    t = time.perf_counter()
                    body = recommender.recommend(
                        user_id=user, session_id=None, count=10, options=options
                    )
                    timings[on] = (time.perf_counter() - t) * 1e6
                    if on and body.items and body.recommendation_id:
                        shown.append((user, body.items[0].item_id, body.recommendation_id))
                with_us.append(timings[True])
                without_us.append(timings[False])
                added_us.append(timings[True] - timings[False])
            log.flush()
            started = time.perf_counter()
            engine.producer.produce(kept.events)
            _caught_up(engine)
            impressions_s = time.perf_counter() - started

            clock = events[-1].timestamp + 1
            clicks = [
                Event(f"c{n}", user, item, "click", clock, clock, recommendation_id=rec)
                for n, (user, item, rec) in enumerate(shown)
            ]
            started = time.perf_counter()
            engine.producer.produce(clicks)
            _caught_up(engine)
            clicks_s = time.perf_counter() - started
            views = [
                Event(f"v{n}", user, item, "view", clock, clock)
                for n, (user, item, _) in enumerate(shown)
            ]
            started = time.perf_counter()
            engine.producer.produce(views)
            _caught_up(engine)
            views_s = time.perf_counter() - started
            counts = engine.store.experiment_counts()
            log.close()
        finally:
            engine.close()
    n = len(shown)
    return {
        "events": len(events),
        "requests": args.requests,
        "request_us_in_experiment": summary(with_us),
        "request_us_outside": summary(without_us),
        "request_us_added": summary(added_us),
        "processor": {
            "impressions_us_per_record": round(impressions_s / max(n, 1) * 1e6, 1),
            "attributed_clicks_us_per_record": round(clicks_s / max(n, 1) * 1e6, 1),
            "plain_views_us_per_record": round(views_s / max(n, 1) * 1e6, 1),
        },
        "counted": counts,
        "python": sys.version.split()[0],
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=1)
    return parser


def main() -> None:
    print(orjson.dumps(run(parser().parse_args())).decode())


if __name__ == "__main__":
    main()
