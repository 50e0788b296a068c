"""The autoscalers' pure builders and the status read back from them, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from reco_operator.autoscaling import (
    LAG_METRIC,
    REQUESTS_METRIC,
    autoscalers,
    capped,
    horizontal_pod_autoscaler,
    hpa_name,
    latency_query,
    provider,
    scaled_object,
    wanted_partitions,
)
from reco_operator.builders import children, deployment
from reco_operator.spec import InvalidSpec
from reco_operator.status import quantity, scaled_events, scaling, status
from tests.operator.test_builders import _engine

pytestmark = pytest.mark.unit

BOTH = {"processor": {"maxReplicas": 8, "lagPerReplica": 500}, "api": {"maxReplicas": 6}}


def _kinds(manifests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["kind"], m["metadata"]["name"]) for m in manifests]


def test_nothing_is_autoscaled_unless_a_section_asks() -> None:
    engine = _engine()
    assert autoscalers(engine) == []
    assert deployment(engine, "processor")["spec"]["replicas"] == 2
    off = _engine({"autoscaling": {"enabled": False, **BOTH}}, keda_crd=True)
    assert autoscalers(off) == []
    assert all("replicas" in deployment(off, r)["spec"] for r in ("processor", "api"))


def test_auto_picks_keda_when_its_crd_is_installed_and_never_both() -> None:
    spec = {"autoscaling": BOTH}
    assert provider(_engine(spec)) == "HPA"
    assert provider(_engine(spec, keda_crd=True)) == "KEDA"
    assert provider(_engine({"autoscaling": {**BOTH, "provider": "HPA"}}, keda_crd=True)) == "HPA"
    assert _kinds(autoscalers(_engine(spec))) == [
        ("HorizontalPodAutoscaler", "shop-processor"),
        ("HorizontalPodAutoscaler", "shop-api"),
    ]
    assert _kinds(autoscalers(_engine(spec, keda_crd=True))) == [
        ("ScaledObject", "shop-processor"),
        ("ScaledObject", "shop-api"),
    ]


def test_an_autoscaled_deployment_leaves_its_replicas_to_the_autoscaler() -> None:
    engine = _engine({"autoscaling": {"processor": {}}})
    assert "replicas" not in deployment(engine, "processor")["spec"]
    assert deployment(engine, "api")["spec"]["replicas"] == 2
    assert "HorizontalPodAutoscaler" not in {m["kind"] for m in children(engine)}


def test_the_processor_hpa_averages_the_group_lag_over_its_replicas() -> None:
    hpa = horizontal_pod_autoscaler(_engine({"autoscaling": BOTH}), "processor")
    spec = hpa["spec"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-processor"}
    assert spec["scaleTargetRef"] == target
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 8)
    group = {"matchLabels": {"group": "reco-processor"}}
    assert spec["metrics"] == [
        {
            "type": "External",
            "external": {
                "metric": {"name": LAG_METRIC, "selector": group},
                "target": {"type": "AverageValue", "averageValue": "500"},
            },
        }
    ]
    # Defaults that do not flap: up at once, down after five quiet minutes, a pod a minute.
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert spec["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
    }
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_the_api_hpa_holds_a_latency_quantile_and_an_optional_request_rate() -> None:
    api = {"maxReplicas": 6, "latency": {"quantile": 0.99, "thresholdSeconds": 0.25}}
    metrics = horizontal_pod_autoscaler(_engine({"autoscaling": {"api": api}}), "api")["spec"][
        "metrics"
    ]
    assert metrics == [
        {
            "type": "Object",
            "object": {
                "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "shop-api"},
                "metric": {"name": "reco_recommendation_latency_p99_seconds"},
                "target": {"type": "Value", "value": "250m"},
            },
        }
    ]
    # Exact: milli-units would round 1.5 ms to 2 ms.
    api["latency"]["thresholdSeconds"] = 0.0015
    metrics = horizontal_pod_autoscaler(_engine({"autoscaling": {"api": api}}), "api")["spec"][
        "metrics"
    ]
    assert metrics[0]["object"]["target"] == {"type": "Value", "value": "1500u"}
    api["requestsPerReplica"] = 150
    metrics = horizontal_pod_autoscaler(_engine({"autoscaling": {"api": api}}), "api")["spec"][
        "metrics"
    ]
    assert metrics[1]["pods"] == {
        "metric": {"name": REQUESTS_METRIC},
        "target": {"type": "AverageValue", "averageValue": "150"},
    }


def test_the_processor_scaled_object_has_the_kafka_trigger() -> None:
    spec = {
        "autoscaling": {
            "processor": {"minReplicas": 0, "maxReplicas": 8, "lagPerReplica": 500,
                          "activationLag": 20, "fallbackReplicas": 3},
            "provider": "KEDA",
        }
    }  # fmt: skip
    scaled = scaled_object(_engine(spec), "processor")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    body = scaled["spec"]
    assert (body["minReplicaCount"], body["maxReplicaCount"]) == (0, 8)
    assert body["fallback"] == {"failureThreshold": 3, "replicas": 3}
    (trigger,) = body["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"] == {
        "bootstrapServers": "kafka:9092",
        "consumerGroup": "reco-processor",
        "topic": "reco.events",
        "lagThreshold": "500",
        "activationLagThreshold": "20",
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
    }
    behavior = body["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_the_api_scaled_object_queries_prometheus_for_latency_and_rate() -> None:
    spec = {
        "autoscaling": {
            "provider": "KEDA",
            "prometheusAddress": "http://prom:9090",
            "api": {
                "latency": {"quantile": 0.9, "thresholdSeconds": 0.05},
                "requestsPerReplica": 80,
            },
        }
    }
    engine = _engine(spec)
    latency, requests = scaled_object(engine, "api")["spec"]["triggers"]
    assert latency["metricType"] == "Value"
    assert latency["metadata"]["serverAddress"] == "http://prom:9090"
    assert latency["metadata"]["threshold"] == "0.05"
    assert latency["metadata"]["query"] == latency_query(engine, 0.9)
    assert 'namespace="ns",service="shop-api"' in latency["metadata"]["query"]
    assert latency["metadata"]["query"].startswith("histogram_quantile(0.9, sum by (le)")
    assert requests["metricType"] == "AverageValue"
    assert "recommendation_latency_seconds_count" in requests["metadata"]["query"]


def test_max_replicas_above_the_partitions_is_capped_and_says_why() -> None:
    engine = _engine({"autoscaling": {"processor": {"maxReplicas": 20}}}, partitions=12)
    assert horizontal_pod_autoscaler(engine, "processor")["spec"]["maxReplicas"] == 12
    message = capped(engine)
    assert message is not None
    assert "capped to the topic's 12 partitions" in message
    assert "extra processors would sit idle" in message
    assert capped(_engine({"autoscaling": {"processor": {"maxReplicas": 12}}})) is None


def test_partitions_are_raised_for_max_replicas_only_when_the_spec_allows() -> None:
    spec = _engine({"autoscaling": {"processor": {"maxReplicas": 20}}}).spec
    processor = spec.autoscaling.scaled_processor()
    assert wanted_partitions(12, processor) == 12
    assert processor is not None
    raising = processor.model_copy(update={"raise_partitions": True})
    assert wanted_partitions(12, raising) == 20
    assert wanted_partitions(24, raising) == 24, "never lowered"


def test_a_latency_quantile_the_adapter_does_not_serve_is_refused() -> None:
    with pytest.raises(InvalidSpec, match=r"must be one of 0\.5, 0\.9, 0\.95, 0\.99"):
        _engine({"autoscaling": {"api": {"latency": {"quantile": 0.97}}}})


def test_a_latency_threshold_under_a_millisecond_is_refused() -> None:
    """An HPA compares metrics in milli-units: 0.5 ms would act as 1 ms."""
    with pytest.raises(InvalidSpec, match="thresholdSeconds"):
        _engine({"autoscaling": {"api": {"latency": {"thresholdSeconds": 0.0005}}}})


def test_hpa_names_for_each_provider() -> None:
    assert hpa_name("shop", "api", "HPA") == "shop-api"
    assert hpa_name("shop", "api", "KEDA") == "keda-hpa-shop-api"


def test_the_status_reads_replicas_and_metrics_from_the_hpa() -> None:
    hpa = {
        "spec": {"minReplicas": 1, "maxReplicas": 8},
        "status": {
            "currentReplicas": 3,
            "desiredReplicas": 5,
            "lastScaleTime": "2026-12-05T08:00:00Z",
            "currentMetrics": [
                {"type": "External", "external": {"metric": {"name": LAG_METRIC},
                                                  "current": {"averageValue": "1500500m"}}}
            ],
            "conditions": [{"type": "ScalingActive", "status": "True", "reason": "Valid"}],
        },
    }  # fmt: skip
    assert scaling("processor", hpa) == {
        "minReplicas": 1,
        "maxReplicas": 8,
        "currentReplicas": 3,
        "desiredReplicas": 5,
        "lastScaleTime": "2026-12-05T08:00:00Z",
        "lag": 4502,
    }
    api = {
        "spec": {"minReplicas": 2, "maxReplicas": 6},
        "status": {
            "currentReplicas": 2,
            "desiredReplicas": 2,
            "currentMetrics": [
                {"type": "Object", "object": {"current": {"value": "120m"}}},
                {"type": "Pods", "pods": {"current": {"averageValue": "75"}}},
            ],
            "conditions": [{"type": "ScalingActive", "status": "False",
                            "reason": "FailedGetObjectMetric", "message": "no metrics API"}],
        },
    }  # fmt: skip
    seen = scaling("api", api)
    assert (seen["latencySeconds"], seen["requestsPerSecond"]) == (0.12, 75.0)
    assert seen["message"] == "FailedGetObjectMetric: no metrics API"
    assert scaling("api", None) == {"message": "waiting for the HorizontalPodAutoscaler"}


def test_an_event_sentence_per_change_of_desired_replicas() -> None:
    before = {"provider": "HPA", "processor": {"desiredReplicas": 2}, "api": {"desiredReplicas": 2}}
    after = {
        "provider": "HPA",
        "processor": {"desiredReplicas": 4, "lag": 3900},
        "api": {"desiredReplicas": 2, "latencySeconds": 0.05},
    }
    assert scaled_events(before, after) == ["processor: 2 -> 4 replicas (lag 3900 records)"]
    assert scaled_events({}, after) == [], "no event for the first reading"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1500m", 1.5),
        ("500u", 0.0005),
        ("872254n", 0.000872254),
        ("2k", 2000.0),
        ("12", 12.0),
        ("0.25", 0.25),
        ("1Ki", 1024.0),
        (None, None),
    ],
)
def test_quantities(text: str | None, value: float | None) -> None:
    assert quantity(text) == value


def test_what_the_autoscalers_no_longer_show_is_removed_from_the_status() -> None:
    """The status is written as a merge patch: a key that went must be sent as null."""
    before = {"autoscaling": {"provider": "HPA", "processor": {"message": "waiting", "lag": 3}}}
    args: dict[str, Any] = {"generation": 1, "replicas": {}, "problems": [], "image": ""}
    args.update(topic="t", partitions=4)
    now = status(before, autoscaling={"provider": "HPA", "processor": {"lag": 5}}, **args)
    assert now["autoscaling"] == {"provider": "HPA", "processor": {"lag": 5, "message": None}}
    assert status(before, autoscaling={}, **args)["autoscaling"] is None
    assert "autoscaling" not in status({}, autoscaling={}, **args)


def test_kafka_credentials_reach_keda_through_a_trigger_authentication() -> None:
    kafka = {
        "bootstrapServers": "kafka:9093",
        "securityProtocol": "SASL_SSL",
        "sasl": {"mechanism": "SCRAM-SHA-256", "secretName": "kafka-user"},
        "tls": {"secretName": "kafka-ca"},
    }
    engine = _engine({"kafka": kafka, "autoscaling": {"processor": {}}}, keda_crd=True)
    credentials, scaled = autoscalers(engine)
    assert (credentials["kind"], credentials["metadata"]["name"]) == (
        "TriggerAuthentication",
        "shop-processor-kafka",
    )
    assert credentials["spec"]["secretTargetRef"] == [
        {"parameter": "username", "name": "kafka-user", "key": "username"},
        {"parameter": "password", "name": "kafka-user", "key": "password"},
        {"parameter": "ca", "name": "kafka-ca", "key": "ca.crt"},
    ]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["authenticationRef"] == {"name": "shop-processor-kafka"}
    assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("scram_sha256", "enable")
    assert _kinds(autoscalers(_engine({"autoscaling": {"processor": {}}}, keda_crd=True))) == [
        ("ScaledObject", "shop-processor")
    ], "PLAINTEXT: no credentials"
    hpa_only = _engine({"kafka": kafka, "autoscaling": {"processor": {}}})
    assert [m["kind"] for m in autoscalers(hpa_only)] == ["HorizontalPodAutoscaler"]
