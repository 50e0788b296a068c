"""The autoscaling loop closed on real metrics, on the suite's control plane.

The operator (a real process) emits HPAs (provider HPA) for a RecoEngine; the real
kube-controller-manager's HPA controller (2 s sync) reads the metrics they name through the
aggregation layer from the suite's metrics adapter (:mod:`tests.support.metrics_adapter`),
which reads them from the engine's real processes; those processes run because the
suite's kubelet (:mod:`tests.support.kubelet`) starts one per Running pod of the
Deployments the HPA scales, against the suite's real Kafka, Redis and PostgreSQL.

With provider KEDA the operator emits a ScaledObject instead, and KEDA itself
(:mod:`tests.support.keda`: its operator and metrics apiserver, built from its source)
makes the HPA and serves its metric: the kafka scaler reads the group's lag from the
broker.

- A burst of events raises the processors' real lag; the processor Deployment scales up,
  the new processes join the consumer group, the lag drains, and after the scale-down
  window the Deployment is back at minReplicas; the features then equal those one
  uninterrupted processor builds from the topic (nothing lost or counted twice across the
  rebalances). Once per provider, HPA and KEDA.
- Load on the api raises its latency quantile past the spec's threshold and the api
  Deployment scales up; the operator, made to reconcile meanwhile, never resets replicas.

A maxReplicas above the topic's partitions (capped, with a condition) is covered by
``test_operator_autoscaling.py``. Each test prints its timeline and writes it to
``timeline.txt`` in its tmp dir.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from kubernetes import client, watch
from kubernetes.utils.quantity import parse_quantity

from reco.demo import generate
from reco.local.servers import RedisServer
from reco.local.stack import post_events
from reco_operator.autoscaling import hpa_name
from tests.conftest import wait_until
from tests.integration.conftest import (
    applied_offsets,
    assert_matches_reference,
    topic_end_offsets,
)
from tests.operator.conftest import Engines, OperatorProcess
from tests.support.keda import Keda
from tests.support.kubelet import Kubelet, Timeline, api_client
from tests.support.metrics_adapter import MetricsAdapter

pytestmark = pytest.mark.operator

# Caps far above what the burst reaches, as in the stack tests: trimming a capped list
# depends on where batches start and end, and the reference's batches differ.
UNCAPPED = {
    "maxRelatedPerItem": 100000,
    "maxPopular": 100000,
    "maxSessions": 10000000,
    "dedupeWindow": 10000000,
}
PARTITIONS = 4  # the manifest's; tests.integration's helpers read as many
LAG_PER_REPLICA = 2000
BURST = 200_000  # events: one processor alone needs well over 20 s for them


def _rules(window_s: int, policy: dict[str, Any]) -> dict[str, Any]:
    return {"stabilizationWindowSeconds": window_s, "policies": [policy]}


UP_AT_ONCE = _rules(0, {"type": "Pods", "value": 4, "periodSeconds": 15})


class Loop:
    """What one closed-loop test watches: the kubelet, the metrics backend (the suite's
    adapter, or KEDA), the HPA, a timeline."""

    def __init__(self, engines: Engines, kubelet: Kubelet, metrics: MetricsAdapter | Keda) -> None:
        self.engines = engines
        self.kubelet = kubelet
        self.metrics = metrics
        self.provider = "KEDA" if isinstance(metrics, Keda) else "HPA"
        api = api_client(engines.plane)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.apps = client.AppsV1Api(api)
        self.timeline: Timeline | None = None

    @property
    def adapter(self) -> MetricsAdapter:
        assert isinstance(self.metrics, MetricsAdapter), "this loop runs KEDA, not the adapter"
        return self.metrics

    def hpa(self, role: str) -> Any:
        """The role's HPA: the operator's, or the one KEDA made for its ScaledObject."""
        return self.autoscaling.read_namespaced_horizontal_pod_autoscaler(
            hpa_name("shop", role, self.provider), self.engines.namespace
        )

    def external_value(self, role: str) -> float:
        """The External metric the role's HPA names, read as the HPA controller reads it:
        through the API server and the aggregator, from whoever serves it."""
        metric = self.hpa(role).spec.metrics[0].external.metric
        labels = metric.selector.match_labels or {}
        selector = urllib.parse.quote(",".join(f"{k}={v}" for k, v in labels.items()))
        path = (
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{self.engines.namespace}/"
            f"{metric.name}?labelSelector={selector}"
        )
        return float(parse_quantity(_raw_value(self.engines, path)))

    def desired(self, role: str) -> int:
        return int(self.hpa(role).status.desired_replicas or 0)

    def replicas(self, role: str) -> int:
        deployment = self.apps.read_namespaced_deployment(f"shop-{role}", self.engines.namespace)
        return int(deployment.spec.replicas or 0)

    def wait(self, what: str, predicate: Callable[[], Any], timeout_s: float) -> None:
        """Wait for ``predicate``; on timeout fail with the timeline, the HPAs' status,
        conditions and events, what the kubelet did and what the adapter served."""
        try:
            wait_until(predicate, timeout_s=timeout_s, every_s=0.5)
        except AssertionError:
            raise AssertionError(f"{what}: not within {timeout_s} s\n{self.report()}") from None

    def report(self) -> str:
        parts = []
        if self.timeline is not None:
            parts.append(f"timeline:\n{self.timeline.render()}")
        for role in ("processor", "api"):
            name = hpa_name("shop", role, self.provider)
            parts.append(
                self.engines.kubectl("describe", "hpa", name, check=False) or f"(no HPA {name})"
            )
        parts.append("kubelet:\n" + "\n".join(self.kubelet.log + self.kubelet.errors))
        if isinstance(self.metrics, Keda):
            parts.append(self.metrics.report())
        else:
            requests = list(self.metrics.requests)[-15:]
            parts.append("adapter, last requests:\n" + "\n".join(requests))
        parts.append(self.kubelet.tails(15))
        return "\n\n".join(parts)

    def record(self, tmp_path: Path, title: str) -> str:
        assert self.timeline is not None
        text = f"{title}\n{self.timeline.render()}\n\nkubelet:\n" + "\n".join(self.kubelet.log)
        (tmp_path / "timeline.txt").write_text(text + "\n")
        print(text)
        return text


@pytest.fixture
def loop_env(engines: Engines, redis_server: RedisServer, pg_database: str) -> dict[str, str]:
    """The engine's backends as the ``RECO_*`` settings the integration helpers read, and
    the Secret the RecoEngine points its roles at."""
    redis_server.start()
    env = {
        "RECO_KAFKA_BOOTSTRAP": engines.kafka.bootstrap,
        "RECO_TOPIC": engines.topic,
        "RECO_REDIS_URL": redis_server.url,
        "RECO_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}:",
        "RECO_DATABASE_URL": pg_database,
    }
    engines.create_secret(**{"redis-url": env["RECO_REDIS_URL"], "database-url": pg_database})
    return env


@pytest.fixture
def loop_factory(engines: Engines, tmp_path: Path) -> Iterator[Callable[..., Loop]]:
    """A kubelet for the given roles of RecoEngine ``shop`` and the metrics adapter
    registered in front of it, or (``provider="KEDA"``) KEDA itself; all closed (processes
    stopped, APIServices deleted or restored, KEDA's CRDs removed) after."""
    made: list[Loop] = []

    def make(*roles: str, provider: str = "HPA") -> Loop:
        kubelet = Kubelet(
            engines.plane, engines.namespace, "shop", roles, tmp_path / "processes"
        ).start()
        metrics: MetricsAdapter | Keda
        if provider == "KEDA":
            metrics = Keda(engines.plane, engines.namespace, tmp_path / "keda")
        else:
            metrics = MetricsAdapter(engines.plane, kubelet, engines.namespace)
        loop = Loop(engines, kubelet, metrics)
        made.append(loop)
        metrics.start()
        return loop

    try:
        yield make
    except BaseException:
        for loop in made:
            print(loop.report())
        raise
    finally:
        for loop in made:
            if loop.timeline is not None:
                loop.timeline.close()
            loop.metrics.close()
            loop.kubelet.close()


def _members(admin: AdminClient, group: str) -> int:
    """Members of the consumer group holding partitions, once it is Stable; else -1."""
    described = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
    if described.state is not ConsumerGroupState.STABLE:
        return -1
    return sum(1 for m in described.members if m.assignment.topic_partitions)


def _scaling(engines: Engines, role: str) -> dict[str, Any]:
    """``status.autoscaling.<role>`` of the RecoEngine."""
    status = engines.engine().get("status") or {}
    return dict((status.get("autoscaling") or {}).get(role) or {})


def _raw_value(engines: Engines, path: str) -> str:
    """The value of the one item a metrics API answers, asked through the API server."""
    value: str = json.loads(engines.plane.kubectl("get", "--raw", path))["items"][0]["value"]
    return value


@pytest.mark.parametrize("provider", ["HPA", "KEDA"])
def test_a_burst_scales_the_processors_up_and_back_with_nothing_lost_or_counted_twice(
    provider: str,
    engines: Engines,
    operator: OperatorProcess,
    loop_env: dict[str, str],
    loop_factory: Callable[..., Loop],
    kafka_admin: AdminClient,
    tmp_path: Path,
) -> None:
    admin = kafka_admin
    started = time.monotonic()
    # KEDA (its CRDs, operator and metrics apiserver) before the RecoEngine that asks for it.
    loop = loop_factory("ingest", "processor", provider=provider)
    kubelet = loop.kubelet
    autoscaling = {
        "provider": provider,
        "processor": {
            "minReplicas": 1,
            "maxReplicas": PARTITIONS,
            "lagPerReplica": LAG_PER_REPLICA,
            "behavior": {
                "scaleUp": UP_AT_ONCE,
                "scaleDown": _rules(15, {"type": "Percent", "value": 100, "periodSeconds": 15}),
            },
        },
    }
    engines.apply(
        engines.manifest(
            redis={"prefix": loop_env["RECO_REDIS_PREFIX"]},
            engine=UNCAPPED,
            ingest={"replicas": 1},
            api={"replicas": 0},
            archiver={"replicas": 0},
            autoscaling=autoscaling,
        )
    )
    group = "reco-processor"

    def lag() -> float | str:
        if loop.provider == "KEDA":
            # What KEDA's kafka scaler reads from the broker now (KEDA caps it at
            # partitions x lagPerReplica: allowIdleConsumers is off).
            return round(loop.external_value("processor"))
        # What the suite's adapter last served the HPA (it asks every 2 s).
        last = loop.adapter.last_lag
        return round(last) if last is not None else "-"

    loop.timeline = Timeline(
        {
            "lag": lag,
            "desired": lambda: loop.desired("processor"),
            "replicas": lambda: loop.replicas("processor"),
            "pods": lambda: kubelet.pods("processor"),
            "processes": lambda: len(kubelet.processes("processor")),
            "members": lambda: _members(admin, group),
        }
    ).start()

    loop.wait("the engine Ready", lambda: engines.ready(), 120)
    loop.wait(
        "one processor and the ingest running",
        lambda: len(kubelet.processes("processor")) == 1 and kubelet.processes("ingest"),
        90,
    )
    (ingest,) = kubelet.processes("ingest")
    ingest.wait_ready()
    kubelet.processes("processor")[0].wait_ready()
    loop.wait(
        "the processor holding every partition",
        lambda: _members(admin, group) == 1,
        60,
    )
    loop.wait("the HPA reading the lag", lambda: loop.hpa("processor").status.current_metrics, 60)
    # The metric reaches the API server through the APIService (the suite's adapter, or
    # KEDA's metrics apiserver asking KEDA's operator).
    assert loop.external_value("processor") == 0
    if provider == "KEDA":
        # KEDA took the ScaledObject and made the HPA under the name the operator reads.
        scaled = engines.get("scaledobject", "shop-processor")
        assert scaled is not None
        conditions = {c["type"]: c["status"] for c in scaled["status"]["conditions"]}
        assert conditions.get("Ready") == "True", scaled["status"]
        assert scaled["status"]["hpaName"] == hpa_name("shop", "processor", "KEDA")
    assert loop.desired("processor") == 1
    # The operator has seen 1 too: the scale-up is a change it reports with an Event.
    loop.wait(
        "status.autoscaling showing 1 processor",
        lambda: _scaling(engines, "processor").get("desiredReplicas") == 1,
        60,
    )

    shop = generate(seed=int(time.time()), users=BURST // 15, now=time.time())
    # Fresh event ids: the demo's are deterministic, and a repeat would be skipped as such.
    fresh = [{k: v for k, v in e.items() if k != "event_id"} for e in shop.events[:BURST]]
    burst_at = time.monotonic()
    assert post_events(ingest.url, fresh) == len(fresh)
    posted_s = time.monotonic() - burst_at

    loop.wait("the HPA asking for more processors", lambda: loop.desired("processor") > 1, 90)
    loop.wait(
        "more processor processes in the consumer group",
        lambda: _members(admin, group) > 1,
        90,
    )
    peak_processes = max(kubelet.started("processor"), 1)

    def drained() -> bool:
        return applied_offsets(loop_env) == topic_end_offsets(loop_env)

    loop.wait("every event applied", drained, 300)
    drained_s = time.monotonic() - burst_at
    loop.wait("the lag read as 0", lambda: loop.external_value("processor") == 0, 60)
    loop.wait(
        "the processor back at minReplicas, one process in the group",
        lambda: (
            loop.replicas("processor") == 1
            and len(kubelet.processes("processor")) == 1
            and _members(admin, group) == 1
        ),
        180,
    )
    back_s = time.monotonic() - burst_at
    loop.timeline.close()
    rows = [row for _, row in loop.timeline.rows]
    desired = [int(r[1]) for r in rows if r[1].isdigit()]
    members = [int(r[5]) for r in rows if r[5].lstrip("-").isdigit()]
    loop.record(
        tmp_path,
        f"processor loop ({provider}): {len(fresh)} events posted in {posted_s:.0f} s, all applied "
        f"{drained_s:.0f} s after the burst began, back at 1 replica after {back_s:.0f} s; "
        f"peak desired {max(desired)}, peak members {max(members)}, "
        f"{peak_processes} processor processes started; test "
        f"{time.monotonic() - started:.0f} s so far",
    )
    assert max(desired) > 1
    assert max(members) > 1

    assert_matches_reference(loop_env, len(fresh))
    loop.wait(
        "status.autoscaling back at 1 processor",
        lambda: _scaling(engines, "processor").get("currentReplicas") == 1,
        60,
    )

    def autoscaled_event() -> bool:
        scaled = {e["message"] for e in engines.events() if e["reason"] == "Autoscaled"}
        return any(m.startswith("processor: 1 -> ") for m in scaled)

    loop.wait("an Autoscaled Event for the scale-up", autoscaled_event, 30)


class DeploymentWatch:
    """Every ``spec.replicas`` of a Deployment the API server reports, from a watch, with
    who owns the field at that moment (server-side apply's managedFields)."""

    def __init__(self, apps: client.AppsV1Api, namespace: str, name: str) -> None:
        self.apps = apps
        self.namespace = namespace
        self.name = name
        self.seen: list[tuple[int, set[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self) -> DeploymentWatch:
        listed = self.apps.list_namespaced_deployment(
            self.namespace, field_selector=f"metadata.name={self.name}"
        )
        for item in listed.items:
            self._see(item)
        self._version = listed.metadata.resource_version
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def replicas(self) -> list[int]:
        return [r for r, _ in self.seen]

    def _see(self, deployment: Any) -> None:
        owners = {
            m.manager
            for m in deployment.metadata.managed_fields or []
            if "f:replicas" in ((m.fields_v1 or {}).get("f:spec") or {})
        }
        replicas = int(deployment.spec.replicas or 0)
        if not self.seen or self.seen[-1] != (replicas, owners):
            self.seen.append((replicas, owners))

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                self.apps.list_namespaced_deployment,
                self.namespace,
                field_selector=f"metadata.name={self.name}",
                resource_version=self._version,
                timeout_seconds=5,
            )
            for event in stream:
                self._version = event["object"].metadata.resource_version
                self._see(event["object"])
                if self._stop.is_set():
                    break


class Load:
    """Threads asking the api processes for recommendations of random users, round robin
    over the processes the kubelet found ready (a Service's part)."""

    def __init__(self, kubelet: Kubelet, users: int, threads: int = 6) -> None:
        self.kubelet = kubelet
        self.users = users
        self.done = 0
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=10) as http:
            for turn in itertools.count():
                if self._stop.is_set():
                    return
                processes = self.kubelet.ready("api")
                if not processes:
                    self._stop.wait(0.1)
                    continue
                process = processes[(seed + turn) % len(processes)]
                user = f"u{rng.randrange(self.users)}"
                try:
                    response = http.get(process.url + "/recommendations", params={"user_id": user})
                    self.done += response.status_code == 200
                except httpx.HTTPError:
                    self.errors += 1  # a process starting or going


def test_load_on_the_api_scales_it_up_and_the_operator_never_resets_replicas(
    engines: Engines,
    operator: OperatorProcess,
    loop_env: dict[str, str],
    loop_factory: Callable[..., Loop],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    # The HPA reads the metric in milli-units: it scales once the p99 passes 1 ms.
    threshold = 0.001
    autoscaling = {
        "provider": "HPA",
        "api": {
            "minReplicas": 1,
            "maxReplicas": 3,
            "latency": {"quantile": 0.99, "thresholdSeconds": threshold},
            # Down only long after the test: every replica count seen during the load
            # is the HPA going up, so any step down would be someone resetting it.
            "behavior": {
                "scaleUp": UP_AT_ONCE,
                "scaleDown": _rules(600, {"type": "Pods", "value": 1, "periodSeconds": 60}),
            },
        },
    }
    manifest = engines.manifest(
        redis={"prefix": loop_env["RECO_REDIS_PREFIX"]},
        # Every request computed afresh: the response cache would hide the load.
        engine={**UNCAPPED, "cacheTtlSeconds": 0},
        ingest={"replicas": 1},
        processor={"replicas": 1},
        api={"replicas": 1},
        archiver={"replicas": 0},
        autoscaling=autoscaling,
    )
    engines.apply(manifest)
    loop = loop_factory("ingest", "processor", "api")
    kubelet, adapter = loop.kubelet, loop.adapter
    load: Load | None = None
    loop.timeline = Timeline(
        {
            "p99_ms": lambda: round(adapter.latency.quantile(0.99) * 1000, 3),
            "desired": lambda: loop.desired("api"),
            "replicas": lambda: loop.replicas("api"),
            "pods": lambda: kubelet.pods("api"),
            "processes": lambda: len(kubelet.processes("api")),
            "requests": lambda: load.done if load is not None else 0,
        }
    ).start()
    loop.wait("the engine Ready", lambda: engines.ready(), 120)
    loop.wait(
        "the ingest, a processor and an api running",
        lambda: all(kubelet.processes(r) for r in ("ingest", "processor", "api")),
        90,
    )
    for role in ("ingest", "processor", "api"):
        kubelet.processes(role)[0].wait_ready()
    (api,) = kubelet.processes("api")
    shop = generate(seed=31, users=1500, now=time.time() - 60)
    httpx.put(api.url + "/items", json=shop.items, timeout=60).raise_for_status()
    assert post_events(kubelet.processes("ingest")[0].url, shop.events) == len(shop.events)
    loop.wait(
        "the events applied",
        lambda: applied_offsets(loop_env) == topic_end_offsets(loop_env),
        180,
    )
    value = _raw_value(
        engines,
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{engines.namespace}/services/"
        "shop-api/reco_recommendation_latency_p99_seconds",
    )
    assert value == "0", f"no request yet, so a p99 of 0, not {value}"
    loop.wait("the HPA reading the latency", lambda: loop.hpa("api").status.current_metrics, 60)
    assert loop.replicas("api") == 1

    watched = DeploymentWatch(loop.apps, engines.namespace, "shop-api").start()
    load = Load(kubelet, users=1500).start()
    try:
        loop.wait("the HPA asking for more api pods", lambda: loop.desired("api") > 1, 120)
        loop.wait(
            "more api processes serving",
            lambda: len(kubelet.processes("api")) > 1 and loop.replicas("api") > 1,
            90,
        )
        scaled_up_s = time.monotonic() - started
        # Make the operator reconcile while the HPA holds the replicas: a new spec.api.replicas
        # (ignored while the api is autoscaled) and an annotation.
        touched = engines.manifest(**{**manifest["spec"], "api": {"replicas": 2}})
        touched["metadata"]["annotations"] = {"reco-test/touched": str(time.time())}
        engines.apply(touched)
        generation = engines.engine()["metadata"]["generation"]
        loop.wait(
            "the operator to reconcile the changed spec",
            lambda: (engines.engine().get("status") or {}).get("observedGeneration") == generation,
            60,
        )
        # A few more of the operator's repair rounds (every 2 s) under the load.
        rows = len(loop.timeline.rows)
        loop.wait("10 s more of the loop", lambda: len(loop.timeline.rows) >= rows + 10, 60)
    finally:
        load.close()
        watched.close()
    loop.timeline.close()
    seen = watched.replicas()
    loop.record(
        tmp_path,
        f"api loop: p99 threshold {threshold} s; scaled up {scaled_up_s:.0f} s into the test; "
        f"{load.done} requests ({load.errors} failed); "
        f"spec.replicas seen by the watch: {watched.seen}",
    )
    assert seen == sorted(seen), f"replicas went down during the load: {watched.seen}"
    assert seen[-1] > 1, watched.seen
    assert all("reco-operator" not in owners for _, owners in watched.seen), watched.seen
    loop.wait(
        "status.autoscaling showing the api scaled up, and the latency the HPA read",
        lambda: (
            _scaling(engines, "api").get("currentReplicas", 0) > 1
            and _scaling(engines, "api").get("latencySeconds", 0) > 0
        ),
        60,
    )
