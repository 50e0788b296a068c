"""The suite's metrics adapter: the metrics the operator's HPAs name, read from the real
engine processes, served to the real HPA controller through the aggregation layer.

In a cluster, prometheus-adapter serves these metrics from Prometheus with the rules the
chart ships (``metricsAdapter.rules``). Neither Prometheus nor prometheus-adapter runs
here, so this small HTTPS server stands in for them; it belongs to the test suite, not to
the product (the chart's answer stays prometheus-adapter, or KEDA). It serves:

- ``external.metrics.k8s.io/v1beta1``: ``reco_consumer_group_lag_records`` selected by
  ``group=<processorGroup>``: the sum of ``consumer_member_lag_records{group}`` over the
  processor processes the :class:`~tests.support.kubelet.Kubelet` runs, read from their
  ``/metrics`` when the HPA asks (the chart's rule is the same sum);
- ``custom.metrics.k8s.io/v1beta2``: ``reco_recommendation_latency_p<NN>_seconds`` on the
  api's Service (an Object metric): the quantile of ``recommendation_latency_seconds``
  over the last ``window_s`` seconds, computed like PromQL's ``histogram_quantile`` over
  the increase of the api processes' buckets, which a thread samples every second. No
  request in the window reads as 0 (an idle api is not slow).

The apiserver reaches it on 127.0.0.1 through a Service of type ExternalName
(``externalName: 127.0.0.1``) that the APIServices name with the adapter's port: the
aggregator dials ``<externalName>:<port>`` (Endpoints cannot hold a loopback address, and
``--enable-aggregator-routing`` would refuse an ExternalName Service). The serving
certificate is issued by the cluster CA for ``<service>.<namespace>.svc`` and the
APIServices carry that CA as their ``caBundle``. The adapter authenticates its caller: TLS
requires a client certificate from the front-proxy CA, which only the apiserver's
aggregator holds (``--proxy-client-cert-file``), with the CN ``--requestheader-allowed-names``
allows; it does not authorise the user in ``X-Remote-User`` (every user the aggregator
forwards may read).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from reco.local.servers import LOOPBACK, free_port
from tests.support.kube import ControlPlane, KubeError
from tests.support.kubelet import Kubelet

logger = logging.getLogger(__name__)

EXTERNAL = "external.metrics.k8s.io"
CUSTOM = "custom.metrics.k8s.io"
EXTERNAL_GV = f"{EXTERNAL}/v1beta1"
CUSTOM_GV = f"{CUSTOM}/v1beta2"
LAG_METRIC = "reco_consumer_group_lag_records"
LATENCY = re.compile(r"^reco_recommendation_latency_p(\d+)_seconds$")
QUANTILES = (50, 90, 95, 99)
PROXY_CLIENT = "front-proxy-client"


def scrape(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of ``name`` on a process's ``/metrics``: (labels, value)."""
    out = []
    for line in httpx.get(url + "/metrics", timeout=2).text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        out.append((labels, float(value)))
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """PromQL's ``histogram_quantile``: ``buckets`` maps each upper bound (``inf``
    included) to its cumulative count; linear within the bucket the rank falls in; the
    highest finite bound when it falls in the ``+Inf`` bucket; 0 without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return 0.0
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


class LatencyWindow:
    """The api processes' latency buckets sampled every second; the increase over the last
    ``window_s`` seconds, summed over the processes (a process that went away counts no
    more, one that came counts from its first sample)."""

    def __init__(self, kubelet: Kubelet, window_s: float) -> None:
        self.kubelet = kubelet
        self.window_s = window_s
        self._history: dict[str, deque[tuple[float, dict[float, float]]]] = {}
        self._lock = threading.Lock()

    def sample(self) -> None:
        now = time.monotonic()
        seen = set()
        for process in self.kubelet.processes("api"):
            try:
                samples = scrape(process.url, "recommendation_latency_seconds_bucket")
            except httpx.HTTPError:
                continue  # starting, or going
            buckets: dict[float, float] = {}
            for labels, value in samples:
                bound = float(labels["le"])  # "+Inf" parses as inf
                buckets[bound] = buckets.get(bound, 0.0) + value
            seen.add(process.url)
            with self._lock:
                history = self._history.setdefault(process.url, deque())
                history.append((now, buckets))
                while history and history[0][0] < now - self.window_s - 1:
                    history.popleft()
        with self._lock:
            for url in set(self._history) - seen:
                if all(p.url != url for p in self.kubelet.processes("api")):
                    del self._history[url]

    def quantile(self, q: float) -> float:
        increase: dict[float, float] = {}
        with self._lock:
            for history in self._history.values():
                (_, first), (_, last) = history[0], history[-1]
                for bound, count in last.items():
                    increase[bound] = increase.get(bound, 0.0) + count - first.get(bound, 0.0)
        return histogram_quantile(q, increase)


class MetricsAdapter:
    """The HTTPS server, its registration (Service + APIServices) and its latency sampler."""

    def __init__(
        self,
        plane: ControlPlane,
        kubelet: Kubelet,
        namespace: str,
        *,
        engine: str = "shop",
        window_s: float = 15.0,
        service: str = "reco-metrics-adapter",
    ) -> None:
        self.plane = plane
        self.kubelet = kubelet
        self.namespace = namespace
        self.engine = engine
        self.service = service
        self.port = free_port()
        self.latency = LatencyWindow(kubelet, window_s)
        self.requests: deque[str] = deque(maxlen=200)
        """The last requests served: user, path, answer (for a failure message)."""
        self.last_lag: float | None = None
        self.last_latency: dict[float, float] = {}
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- what the HPA reads ------------------------------------------------------------------

    def group_lag(self, group: str) -> float:
        total = 0.0
        for process in self.kubelet.processes("processor"):
            try:
                samples = scrape(process.url, "consumer_member_lag_records")
            except httpx.HTTPError:
                continue  # not serving yet, or gone: prometheus-adapter would not see it
            total += sum(v for labels, v in samples if labels.get("group") == group)
        self.last_lag = total
        return total

    def latency_quantile(self, q: float) -> float:
        value = self.latency.quantile(q)
        self.last_latency[q] = value
        return value

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, available_timeout_s: float = 60) -> MetricsAdapter:
        host = f"{self.service}.{self.namespace}.svc"
        crt, key = self.plane.issue_serving_certificate(
            f"adapter-{self.namespace}"[:60], [host, LOOPBACK]
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(crt), str(key))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(self.plane.pki / "front-proxy-ca.crt"))
        server = _Server((LOOPBACK, self.port), _handler(self), context)
        self._server = server
        for target, name in ((server.serve_forever, "adapter"), (self._sample, "latency")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._register(available_timeout_s)
        return self

    def close(self) -> None:
        self._stop.set()
        for name in self._apiservice_names():
            self.plane.kubectl("delete", "apiservice", name, "--ignore-not-found", check=False)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(10)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.latency.sample()
            except Exception as exc:  # a process going away mid-scrape
                logger.info("latency sample: %s", exc)
            self._stop.wait(1.0)

    @staticmethod
    def _apiservice_names() -> list[str]:
        return [f"v1beta1.{EXTERNAL}", f"v1beta2.{CUSTOM}"]

    def _register(self, timeout_s: float) -> None:
        bundle = base64.b64encode((self.plane.pki / "ca.crt").read_bytes()).decode()
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.service, "namespace": self.namespace},
            "spec": {"type": "ExternalName", "externalName": LOOPBACK},
        }
        items: list[dict[str, Any]] = [service]
        for group, version in ((EXTERNAL, "v1beta1"), (CUSTOM, "v1beta2")):
            items.append(
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": f"{version}.{group}"},
                    "spec": {
                        "group": group,
                        "version": version,
                        # The port is what the aggregator dials (the default is 443).
                        "service": {
                            "name": self.service,
                            "namespace": self.namespace,
                            "port": self.port,
                        },
                        "caBundle": bundle,
                        "groupPriorityMinimum": 100,
                        "versionPriority": 100,
                    },
                }
            )
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.plane.kubectl("apply", "-f", "-", input_text=body)
        deadline = time.monotonic() + timeout_s
        available = '{.status.conditions[?(@.type=="Available")].status}'
        while True:
            states = [
                self.plane.kubectl("get", "apiservice", n, "-o", f"jsonpath={available}")
                for n in self._apiservice_names()
            ]
            if states == ["True", "True"]:
                return
            if time.monotonic() > deadline:
                conditions = self.plane.kubectl(
                    "get", "apiservice", *self._apiservice_names(), "-o",
                    "jsonpath={.items[*].status.conditions}",
                )  # fmt: skip
                raise KubeError(
                    f"the metrics adapter's APIServices not Available in {timeout_s} s: "
                    f"{conditions}\nrequests served: {list(self.requests)[-10:]}"
                )
            time.sleep(0.2)

    # -- the API ------------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if path == "/apis":
            return 200, _group_list()
        if path == "/openapi/v2":
            return 200, {"swagger": "2.0", "info": {"title": "reco", "version": "v1"}, "paths": {}}
        if path == "/openapi/v3":
            return 200, {"paths": {}}
        if path == f"/apis/{EXTERNAL_GV}":
            return 200, _resources(EXTERNAL_GV, [(LAG_METRIC, "ExternalMetricValueList")])
        if path == f"/apis/{CUSTOM_GV}":
            names = [f"services/reco_recommendation_latency_p{q}_seconds" for q in QUANTILES]
            return 200, _resources(CUSTOM_GV, [(n, "MetricValueList") for n in names])
        # /apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>
        if len(parts) == 6 and "/".join(parts[1:3]) == EXTERNAL_GV and parts[3] == "namespaces":
            return self._external(parts[4], parts[5], query)
        # /apis/custom.metrics.k8s.io/v1beta2/namespaces/<ns>/services/<name>/<metric>
        if len(parts) == 8 and "/".join(parts[1:3]) == CUSTOM_GV and parts[5] == "services":
            return self._latency(parts[4], parts[6], parts[7])
        return _status(404, f"not served here: {path}")

    def _external(
        self, namespace: str, metric: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any]]:
        selector = dict(
            term.split("=", 1) for term in query.get("labelSelector", [""])[0].split(",") if term
        )
        if metric != LAG_METRIC or namespace != self.namespace or "group" not in selector:
            return _status(404, f"no external metric {metric} {selector} in {namespace}")
        lag = self.group_lag(selector["group"])
        item = {
            "metricName": metric,
            "metricLabels": {"group": selector["group"]},
            "timestamp": _now(),
            "value": _quantity(lag),
        }
        return 200, {
            "kind": "ExternalMetricValueList",
            "apiVersion": EXTERNAL_GV,
            "metadata": {},
            "items": [item],
        }

    def _latency(self, namespace: str, service: str, metric: str) -> tuple[int, dict[str, Any]]:
        match = LATENCY.match(metric)
        if (
            match is None
            or int(match.group(1)) not in QUANTILES
            or namespace != self.namespace
            or service != f"{self.engine}-api"
        ):
            return _status(404, f"no metric {metric} on service {namespace}/{service}")
        value = self.latency_quantile(int(match.group(1)) / 100)
        item = {
            "describedObject": {
                "kind": "Service",
                "namespace": namespace,
                "name": service,
                "apiVersion": "/v1",
            },
            "metric": {"name": metric},
            "timestamp": _now(),
            "windowSeconds": int(self.latency.window_s),
            "value": _quantity(value),
        }
        return 200, {
            "kind": "MetricValueList",
            "apiVersion": CUSTOM_GV,
            "metadata": {},
            "items": [item],
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext
    ) -> None:
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        # The handshake happens in the request's thread, so one slow client never holds
        # up the accept loop.
        sock, address = super().get_request()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


def _handler(adapter: MetricsAdapter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            self.request.settimeout(10)
            self.request.do_handshake()
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # each request is kept in adapter.requests instead

        def do_GET(self) -> None:
            peer = self.request.getpeercert() or {}
            subject = dict(x[0] for x in peer.get("subject", ()))
            split = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(split.path).rstrip("/") or "/"
            if subject.get("commonName") != PROXY_CLIENT:
                code, body = _status(403, "only the aggregator's front-proxy client may call")
            else:
                try:
                    code, body = adapter.answer(path, urllib.parse.parse_qs(split.query))
                except Exception as exc:  # an answer, not a dropped connection
                    logger.exception("metrics adapter: %s", path)
                    code, body = _status(500, f"{type(exc).__name__}: {exc}")
            user = self.headers.get("X-Remote-User", "-")
            value = (body.get("items") or [{}])[0].get("value", "") if code == 200 else ""
            adapter.requests.append(f"{user} GET {self.path} -> {code} {value}".rstrip())
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _group_list() -> dict[str, Any]:
    def group(name: str, version: str) -> dict[str, Any]:
        gv = {"groupVersion": f"{name}/{version}", "version": version}
        return {"name": name, "versions": [gv], "preferredVersion": gv}

    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [group(EXTERNAL, "v1beta1"), group(CUSTOM, "v1beta2")],
    }


def _resources(group_version: str, names: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {"name": n, "singularName": "", "namespaced": True, "kind": k, "verbs": ["get"]}
            for n, k in names
        ],
    }


def _status(code: int, message: str) -> tuple[int, dict[str, Any]]:
    reason = {403: "Forbidden", 404: "NotFound"}.get(code, "InternalError")
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity: whole when whole (a lag), else in nano-units (seconds of
    latency)."""
    if value == int(value):
        return str(int(value))
    return f"{round(value * 1e9)}n"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
