"""Autoscaling against the real control plane: the operator's HPAs acted on by the real
kube-controller-manager (bounds, with no metrics API: what the HPA controller does without
metrics), KEDA ScaledObjects validated by KEDA's own CRD (fetched by
tools/install-keda-crds.sh; KEDA itself does not run here), the provider switch, the hand
back of replicas, the partition cap. The closed loop on real metrics is
``test_autoscaling_loop.py``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from reco_operator.autoscaling import autoscalers
from reco_operator.builders import Engine
from reco_operator.spec import parse_spec
from tests.conftest import REPO, wait_until
from tests.operator.conftest import Engines, OperatorProcess

pytestmark = pytest.mark.operator

BOTH = {"shop-processor", "shop-api"}


def _keda_crd_files() -> dict[str, str]:
    script = REPO / "tools" / "install-keda-crds.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def _remove_keda(engines: Engines) -> None:
    for name in _keda_crd_files():
        engines.plane.kubectl(
            "delete", "crd", f"{name}.keda.sh", "--ignore-not-found", "--wait=true", "--timeout=60s"
        )


def _install_keda(engines: Engines) -> None:
    for name, path in _keda_crd_files().items():
        engines.plane.kubectl("apply", "--server-side", "-f", path)
        engines.plane.wait_established(f"{name}.keda.sh")


@pytest.fixture
def no_keda(engines: Engines) -> Iterator[None]:
    """KEDA's CRDs absent at the start and at the end (other tests' Auto must pick HPA)."""
    _remove_keda(engines)
    try:
        yield
    finally:
        _remove_keda(engines)


def _replicas_owners(deployment: dict[str, Any]) -> set[str]:
    return {
        m["manager"]
        for m in deployment["metadata"].get("managedFields") or []
        if "f:replicas" in ((m.get("fieldsV1") or {}).get("f:spec") or {})
    }


def _deployment(engines: Engines, role: str) -> dict[str, Any]:
    out = engines.kubectl(
        "get", "deployment", f"shop-{role}", "-o", "json", "--show-managed-fields"
    )
    body: dict[str, Any] = json.loads(out)
    return body


def _scaling(engines: Engines) -> dict[str, Any]:
    status = engines.engine().get("status") or {}
    return dict(status.get("autoscaling") or {})


def test_hpas_hold_the_bounds_and_switching_off_hands_replicas_back(
    engines: Engines, operator: OperatorProcess
) -> None:
    engines.create_secret()
    engines.apply(engines.manifest())
    engines.wait_ready()
    assert "reco-operator" in _replicas_owners(_deployment(engines, "processor"))

    autoscaling = {
        "provider": "HPA",
        "processor": {"minReplicas": 3, "maxReplicas": 4, "lagPerReplica": 200},
        "api": {"minReplicas": 3, "maxReplicas": 5, "requestsPerReplica": 50},
    }
    engines.apply(engines.manifest(autoscaling=autoscaling))
    wait_until(lambda: engines.names("horizontalpodautoscalers") == BOTH, 60, 0.5)
    hpa = engines.get("hpa", "shop-processor")
    assert hpa is not None
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 4)
    lag = hpa["spec"]["metrics"][0]["external"]["metric"]
    assert lag["name"] == "reco_consumer_group_lag_records"

    # The real HPA controller raises both to minReplicas (no metrics API is needed for
    # that); the operator no longer owns spec.replicas, so it never sets them back.
    def scaled() -> bool:
        return all(
            _deployment(engines, r)["spec"]["replicas"] == 3
            and _scaling(engines).get(r, {}).get("currentReplicas") == 3
            for r in ("processor", "api")
        )

    wait_until(scaled, 60, 0.5)
    engines.wait_ready()
    # No metrics API here: the status passes on what the HPA says about it.
    wait_until(lambda: "FailedGet" in _scaling(engines)["processor"].get("message", ""), 60, 0.5)
    for role in ("processor", "api"):
        assert "reco-operator" not in _replicas_owners(_deployment(engines, role))
    seen = _scaling(engines)
    assert seen["provider"] == "HPA"
    assert seen["processor"]["desiredReplicas"] == 3
    assert (seen["processor"]["minReplicas"], seen["processor"]["maxReplicas"]) == (3, 4)
    assert engines.engine()["status"]["replicas"]["processor"] == "3/3"
    assert engines.condition("AutoscalingCapped")["status"] == "False"
    assert _deployment(engines, "ingest")["spec"]["replicas"] == 2, "ingest is not autoscaled"

    # The HPA moves the processor to a new minimum: the status follows, with an Event.
    raised_min = {**autoscaling, "processor": {**autoscaling["processor"], "minReplicas": 4}}
    engines.apply(engines.manifest(autoscaling=raised_min))
    wait_until(lambda: _scaling(engines)["processor"].get("currentReplicas") == 4, 60, 0.5)
    assert _deployment(engines, "processor")["spec"]["replicas"] == 4

    def autoscaled_event() -> bool:  # posted just after the status write
        scaled = {e["message"] for e in engines.events() if e["reason"] == "Autoscaled"}
        return "processor: 3 -> 4 replicas" in scaled

    wait_until(autoscaled_event, 30, 0.5)

    engines.apply(engines.manifest(autoscaling={**autoscaling, "enabled": False}))

    def handed_back() -> bool:
        return (
            not engines.names("horizontalpodautoscalers")
            and _deployment(engines, "processor")["spec"]["replicas"] == 2
            and _deployment(engines, "api")["spec"]["replicas"] == 2
        )

    wait_until(handed_back, 60, 0.5)
    engines.wait_ready()
    assert "reco-operator" in _replicas_owners(_deployment(engines, "processor"))
    assert "autoscaling" not in engines.engine()["status"]
    assert not engines.condition("AutoscalingCapped")


def test_auto_emits_scaled_objects_once_keda_is_installed_and_never_both(
    engines: Engines, operator: OperatorProcess, no_keda: None
) -> None:
    engines.create_secret()
    autoscaling: dict[str, Any] = {
        "processor": {"minReplicas": 1, "maxReplicas": 4, "fallbackReplicas": 2},
        "api": {"latency": {"quantile": 0.99, "thresholdSeconds": 0.2}, "requestsPerReplica": 40},
    }
    engines.apply(engines.manifest(autoscaling=autoscaling))
    wait_until(lambda: engines.names("horizontalpodautoscalers") == BOTH, 60, 0.5)
    engines.wait_ready()
    assert _scaling(engines)["provider"] == "HPA"

    _install_keda(engines)  # Auto now means KEDA: the HPAs go, ScaledObjects come

    def keda() -> bool:
        return (
            engines.names("scaledobjects") == BOTH
            and not engines.names("horizontalpodautoscalers")
            and _scaling(engines).get("provider") == "KEDA"
        )

    wait_until(keda, 60, 0.5)
    processor = engines.get("scaledobject", "shop-processor")
    assert processor is not None
    (trigger,) = processor["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == engines.topic
    assert trigger["metadata"]["bootstrapServers"] == engines.kafka.bootstrap
    fallback = processor["spec"]["fallback"]  # KEDA's schema adds its default behavior
    assert (fallback["failureThreshold"], fallback["replicas"]) == (3, 2)
    api = engines.get("scaledobject", "shop-api")
    assert api is not None
    assert [t["type"] for t in api["spec"]["triggers"]] == ["prometheus", "prometheus"]
    # KEDA does not run here: no HPA of its own, and the status says the operator waits.
    assert _scaling(engines)["processor"] == {"message": "waiting for the HorizontalPodAutoscaler"}
    deleted = {e["message"] for e in engines.events() if e["reason"] == "Deleted"}
    assert "deleted HorizontalPodAutoscaler shop-processor: the spec no longer asks for it" in (
        deleted
    )

    engines.apply(engines.manifest(autoscaling={**autoscaling, "provider": "HPA"}))

    def hpa() -> bool:
        return engines.names("horizontalpodautoscalers") == BOTH and not engines.names(
            "scaledobjects"
        )

    wait_until(hpa, 60, 0.5)


def test_keda_asked_for_but_not_installed_stops_with_a_reason(
    engines: Engines, operator: OperatorProcess, no_keda: None
) -> None:
    engines.create_secret()
    engines.apply(engines.manifest(autoscaling={"provider": "KEDA", "processor": {}}))
    wait_until(lambda: engines.condition("Degraded").get("reason") == "KedaNotInstalled", 60, 0.5)
    assert "install KEDA" in engines.condition("Degraded")["message"]
    assert not engines.names("deployments")


def test_max_replicas_above_the_partitions_is_capped_until_the_spec_lets_them_rise(
    engines: Engines, operator: OperatorProcess, kafka_admin: AdminClient
) -> None:
    engines.create_secret()
    autoscaling: dict[str, Any] = {"provider": "HPA", "processor": {"maxReplicas": 6}}
    engines.apply(engines.manifest(autoscaling=autoscaling))  # the topic has 4 partitions
    wait_until(lambda: engines.condition("AutoscalingCapped").get("status") == "True", 60, 0.5)
    capped = engines.condition("AutoscalingCapped")
    assert capped["reason"] == "TopicPartitions"
    assert "capped to the topic's 4 partitions" in capped["message"]
    assert "extra processors would sit idle" in capped["message"]
    hpa = engines.get("hpa", "shop-processor")
    assert hpa is not None
    assert hpa["spec"]["maxReplicas"] == 4
    wait_until(lambda: "AutoscalingCapped" in {e["reason"] for e in engines.events()}, 30, 0.5)
    engines.wait_ready()

    autoscaling["processor"]["raisePartitions"] = True
    engines.apply(engines.manifest(autoscaling=autoscaling))

    def raised() -> bool:
        topic = kafka_admin.list_topics(engines.topic, timeout=10).topics[engines.topic]
        hpa = engines.get("hpa", "shop-processor")
        return (
            len(topic.partitions) == 6
            and hpa is not None
            and hpa["spec"]["maxReplicas"] == 6
            and engines.condition("AutoscalingCapped").get("status") == "False"
        )

    wait_until(raised, 60, 0.5)
    engines.wait_ready()
    assert engines.engine()["status"]["topic"]["partitions"] == 6
    assert engines.condition("Degraded")["status"] == "False"


def test_a_sasl_ssl_spec_s_scaled_object_and_credentials_pass_keda_s_schema(
    engines: Engines, no_keda: None
) -> None:
    """A Kafka with SASL and TLS cannot be reached from here (the suite's broker is
    PLAINTEXT): what the operator would emit is checked by a server-side dry run against
    KEDA's CRDs, strict about unknown fields."""
    _install_keda(engines)
    spec = engines.manifest(
        kafka={
            "securityProtocol": "SASL_SSL",
            "sasl": {"secretName": "kafka-user"},
            "tls": {"secretName": "kafka-ca", "certificateKey": "tls.crt", "keyKey": "tls.key"},
        },
        autoscaling={"processor": {"minReplicas": 0, "activationLag": 5}, "provider": "KEDA"},
    )["spec"]
    engine = Engine("shop", engines.namespace, "0000", parse_spec(spec), partitions=4)
    manifests = autoscalers(engine)
    assert [m["kind"] for m in manifests] == ["TriggerAuthentication", "ScaledObject"]
    for manifest in manifests:
        manifest["metadata"].pop("ownerReferences")  # no RecoEngine with that uid
        engines.kubectl(
            "apply", "--server-side", "--dry-run=server", "--field-manager=reco-operator",
            "-f", "-", input_text=json.dumps(manifest),
        )  # fmt: skip
