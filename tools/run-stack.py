#!/usr/bin/env python3
"""``make run-stack``: the production shape on one machine.

Starts Kafka, Redis and PostgreSQL (fetched and installed by the tools/ scripts when
missing) on free ports, then the four services on the ports of the README's table
(``reco api`` :8080, ``reco ingest`` :8081, ``reco processor`` :8082, ``reco archiver``
:8083; each can be changed by a flag); loads the demo shop through ingest; runs until
Ctrl-C or SIGTERM, then stops everything and removes its data.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

import httpx

from reco.demo import generate
from reco.local.stack import README_PORTS, ROLES, local_stack, post_events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for role in ROLES:
        parser.add_argument(
            f"--{role}-port",
            type=int,
            default=README_PORTS[role],
            help=f"port of reco {role} (default {README_PORTS[role]})",
        )
    parser.add_argument("--no-demo", action="store_true", help="do not load the demo shop")
    args = parser.parse_args()
    ports = {role: getattr(args, f"{role}_port") for role in ROLES}
    # Checked before the servers start, which takes a minute, rather than after.
    busy = [f"{port} ({role})" for role, port in ports.items() if not _free(port)]
    if busy:
        print(
            f"already in use on 127.0.0.1: {', '.join(busy)} (a `make run`?); stop what uses "
            "it, or give the role another port (--api-port, --ingest-port, ...)",
            file=sys.stderr,
        )
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logs = Path(tempfile.mkdtemp(prefix="reco-stack-logs-"))
    print("starting Kafka, Redis, PostgreSQL and the four services (about a minute)...")
    sys.stdout.flush()
    with local_stack(logs, ports=ports) as stack:
        api, ingest = stack["api"].url, stack["ingest"].url
        demo_user = None
        if not args.no_demo:
            shop = generate()
            httpx.put(api + "/items", json=shop.items, timeout=60).raise_for_status()
            post_events(ingest, shop.events)
            demo_user = shop.demo_user
        print(f"reco-engine stack: api {api}, ingest {ingest}; service logs in {logs}")
        print(f"  processor probes and metrics {stack['processor'].url}/metrics")
        print(f"  archiver probes and metrics  {stack['archiver'].url}/metrics")
        print(f"  kafka {stack.env['RECO_KAFKA_BOOTSTRAP']}, redis {stack.env['RECO_REDIS_URL']}")
        print(f"  postgres {stack.env['RECO_DATABASE_URL']}")
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


def _free(port: int) -> bool:
    """Whether a service could listen on ``port``: as uvicorn does, with SO_REUSEADDR, so
    connections of a stack just stopped (TIME_WAIT) do not count as a listener."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
