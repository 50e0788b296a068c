"""``python -m reco_operator`` (``reco-operator``): run the operator.

With leader election (the default), every replica campaigns for the Lease
``reco-operator`` in its own namespace; the one holding it runs kopf, the others wait to
take over (in ``lease-duration`` seconds when the leader dies without letting go). A leader
that fails to renew its Lease stops handling at once and exits, so that two replicas never
act on one RecoEngine. ``GET /healthz`` answers 200 while the process does its part
(campaigning, or leading with kopf running).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf
from kubernetes import config as kube_config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from reco_operator import FIELD_MANAGER, __version__
from reco_operator.handlers import Operator, configure

log = logging.getLogger("reco_operator")

LEASE = "reco-operator"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reco-operator", description="Reconcile RecoEngine resources (recoengine.io)."
    )
    parser.add_argument("--version", action="version", version=f"reco-operator {__version__}")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeat for more); none: every namespace",
    )
    parser.add_argument("--liveness-port", type=int, default=8080, help="GET /healthz here")
    parser.add_argument(
        "--repair-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often every RecoEngine is reconciled again to repair drift (default 60)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    parser.add_argument(
        "--no-leader-election",
        action="store_true",
        help="run kopf at once: for a single replica, or outside a cluster",
    )
    parser.add_argument(
        "--lease-name",
        default=LEASE,
        help=f"name of the Lease (default {LEASE}); one per operator installation, so that "
        "two installations in one namespace (each watching its own namespaces) elect apart",
    )
    parser.add_argument("--lease-duration", type=int, default=15, metavar="SECONDS")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


class _State:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.kopf: threading.Thread | None = None
        self.campaigning = True

    def healthy(self) -> bool:
        if self.kopf is not None:
            return self.kopf.is_alive()
        return self.campaigning


def _serve_health(port: int, state: _State) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/healthz" and state.healthy()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok\n" if ok else b"not ok\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer(("0.0.0.0", port), Health)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server


def _run_kopf(args: argparse.Namespace, state: _State) -> None:
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        stop_flag=state.stop,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.log_level != "debug":
        # kopf logs every handler call and the election every renewal; what the operator
        # does is logged by reco_operator and posted as Events on each RecoEngine.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("leaderelection").setLevel(logging.WARNING)
    try:
        kube_config.load_config()
    except kube_config.ConfigException as exc:
        print(f"reco-operator: no Kubernetes credentials: {exc}", file=sys.stderr)
        return 2
    configure(Operator(repair_interval_s=args.repair_interval, namespaces=tuple(args.namespace)))
    state = _State()
    _serve_health(args.liveness_port, state)
    if args.no_leader_election:
        state.campaigning = False
        log.info("%s %s: running without leader election", FIELD_MANAGER, __version__)
        # In the main thread kopf handles SIGINT and SIGTERM itself.
        kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace)
        return 0
    return _lead(args, state)


def _lead(args: argparse.Namespace, state: _State) -> int:
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    lost = threading.Event()

    def started() -> None:
        log.info(
            "%s leads (Lease %s/%s)", identity, args.leader_election_namespace, args.lease_name
        )
        state.kopf = threading.current_thread()
        _run_kopf(args, state)

    def stopped() -> None:
        lost.set()

    def terminate(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        state.stop.set()
        if state.kopf is None:
            os._exit(0)  # not leading: nothing to finish

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    duration = args.lease_duration
    election = leaderelection.LeaderElection(
        electionconfig.Config(
            LeaseLock(args.lease_name, args.leader_election_namespace, identity),
            lease_duration=duration,
            renew_deadline=max(2, duration * 2 // 3),
            retry_period=max(1, duration // 7),
            onstarted_leading=started,
            onstopped_leading=stopped,
        )
    )
    log.info(
        "%s campaigns for Lease %s/%s", identity, args.leader_election_namespace, args.lease_name
    )
    threading.Thread(target=election.run, name="leader-election", daemon=True).start()
    while not (lost.is_set() or state.stop.is_set() or _kopf_ended(state)):
        lost.wait(1)
    stepping_down = not state.stop.is_set()
    state.stop.set()
    if state.kopf is not None:
        state.kopf.join(30)
    if stepping_down:
        why = "lost the Lease" if lost.is_set() else "kopf stopped"
        log.error("%s: exiting so that a new leader takes over cleanly", why)
        return 1
    return 0


def _kopf_ended(state: _State) -> bool:
    return state.kopf is not None and not state.kopf.is_alive()


if __name__ == "__main__":
    raise SystemExit(main())
