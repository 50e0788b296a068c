#!/usr/bin/env python3
"""``make run-stack``: the production shape on one machine.

Starts Kafka, Redis and PostgreSQL (fetched and installed by the tools/ scripts when
missing) on free ports, then ``reco ingest`` on :8081, ``reco processor``, ``reco archiver``
and ``reco api`` on :8080; loads the demo shop through ingest; runs until Ctrl-C, then
stops everything and removes its data.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reco.demo import generate
from tests.support.stack import local_stack, post_events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--ingest-port", type=int, default=8081)
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logs = Path(tempfile.mkdtemp(prefix="reco-stack-logs-"))
    print("starting Kafka, Redis, PostgreSQL and the four services (about a minute)...")
    ports = {"api": args.api_port, "ingest": args.ingest_port}
    with local_stack(logs, ports=ports) as stack:
        api, ingest = stack["api"].url, stack["ingest"].url
        demo_user = None
        if not args.no_demo:
            shop = generate()
            httpx.put(api + "/items", json=shop.items, timeout=60).raise_for_status()
            post_events(ingest, shop.events)
            demo_user = shop.demo_user
        print(f"reco-engine stack: api {api}, ingest {ingest}; service logs in {logs}")
        print(f"  processor metrics {stack['processor'].url}/metrics")
        print(f"  archiver metrics  {stack['archiver'].url}/metrics")
        print(f"  kafka {stack.env['RECO_KAFKA_BOOTSTRAP']}, redis and postgres on free ports")
        if demo_user:
            print(f"  demo user:  {demo_user}")
            print(f"  try:        curl '{api}/recommendations?user_id={demo_user}&count=10'")
            print(f"  events go to ingest: curl -X POST {ingest}/events ...")
        print("Ctrl-C stops everything.")
        sys.stdout.flush()
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
