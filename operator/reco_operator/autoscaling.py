"""Pure builders of the autoscalers: a KEDA ScaledObject or an ``autoscaling/v2``
HorizontalPodAutoscaler per autoscaled role, never both (the handlers delete the one the
provider does not use).

The processor scales on consumer lag: KEDA's kafka trigger reads the group's lag from the
brokers; an HPA reads ``reco_consumer_group_lag_records``, the group's lag summed from the
processors' ``consumer_member_lag_records`` by the metrics adapter (the chart's
``metricsAdapter`` rules), as an External metric averaged over the replicas. The api
scales on a latency quantile of ``recommendation_latency_seconds`` (a Prometheus query for
KEDA, an Object metric on the api's Service for an HPA), and optionally on its request
rate per pod.

The processor's maxReplicas is capped to the topic's partitions: a consumer group gives a
partition to one member only, so consumers beyond them would sit idle.
"""

from __future__ import annotations

from typing import Any, Literal

from reco_operator.builders import Engine, Manifest, _metadata, child_name
from reco_operator.spec import ApiAutoscaling, ProcessorAutoscaling

Provider = Literal["KEDA", "HPA"]
AUTOSCALED = ("processor", "api")

KEDA_CRD = "scaledobjects.keda.sh"
KEDA_API = "keda.sh/v1alpha1"
HPA_API = "autoscaling/v2"

LAG_METRIC = "reco_consumer_group_lag_records"
"""External metric: ``sum by (group) (consumer_member_lag_records)``, selected by group."""
REQUESTS_METRIC = "reco_recommendation_requests_per_second"
"""Pods metric: each api pod's rate of ``recommendation_latency_seconds_count``."""
RATE_WINDOW = "2m"


def latency_metric(quantile: float) -> str:
    """Object metric on the api's Service: ``reco_recommendation_latency_p95_seconds``."""
    return f"reco_recommendation_latency_p{round(quantile * 100)}_seconds"


def provider(engine: Engine) -> Provider:
    chosen = engine.spec.autoscaling.provider
    if chosen == "Auto":
        return "KEDA" if engine.keda_crd else "HPA"
    return chosen


def autoscaled(engine: Engine, role: str) -> ProcessorAutoscaling | ApiAutoscaling | None:
    return engine.spec.autoscaling.of(role) if role in AUTOSCALED else None


def max_replicas(engine: Engine, role: str) -> int:
    """The spec's maxReplicas; the processor's at most the topic's partitions."""
    section = autoscaled(engine, role)
    assert section is not None
    if role == "processor":
        return max(1, min(section.max_replicas, engine.partitions))
    return section.max_replicas


def min_replicas(engine: Engine, role: str) -> int:
    section = autoscaled(engine, role)
    assert section is not None
    return min(section.min_replicas, max_replicas(engine, role))


def capped(engine: Engine) -> str | None:
    """Why the processor's maxReplicas is not applied as given, or None."""
    section = engine.spec.autoscaling.scaled_processor()
    if section is None or section.max_replicas <= engine.partitions:
        return None
    return (
        f"spec.autoscaling.processor.maxReplicas {section.max_replicas} is capped to the "
        f"topic's {engine.partitions} partitions: a consumer group gives each partition to "
        "one member, so extra processors would sit idle; raise spec.kafka.partitions or set "
        "spec.autoscaling.processor.raisePartitions"
    )


def wanted_partitions(engine_spec_partitions: int, section: ProcessorAutoscaling | None) -> int:
    """The partitions to ask the broker for: the spec's, or the processor's maxReplicas
    when the spec lets the operator raise them."""
    if section is not None and section.raise_partitions:
        return max(engine_spec_partitions, section.max_replicas)
    return engine_spec_partitions


def _target(engine: Engine, role: str) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": child_name(engine, role)}


def _behavior(section: ProcessorAutoscaling | ApiAutoscaling) -> dict[str, Any]:
    dumped: dict[str, Any] = section.behavior.model_dump(by_alias=True)
    return dumped


# -- HPA -----------------------------------------------------------------------------------------


def _lag_metric(engine: Engine, section: ProcessorAutoscaling) -> dict[str, Any]:
    return {
        "type": "External",
        "external": {
            "metric": {
                "name": LAG_METRIC,
                "selector": {"matchLabels": {"group": engine.spec.kafka.processor_group}},
            },
            "target": {"type": "AverageValue", "averageValue": str(section.lag_per_replica)},
        },
    }


def _latency_metric(engine: Engine, section: ApiAutoscaling) -> dict[str, Any]:
    service = {"apiVersion": "v1", "kind": "Service", "name": child_name(engine, "api")}
    threshold = _quantity(section.latency.threshold_seconds)
    return {
        "type": "Object",
        "object": {
            "describedObject": service,
            "metric": {"name": latency_metric(section.latency.quantile)},
            "target": {"type": "Value", "value": threshold},
        },
    }


def _requests_metric(section: ApiAutoscaling) -> dict[str, Any]:
    assert section.requests_per_replica is not None
    per_pod = _quantity(section.requests_per_replica)
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": REQUESTS_METRIC},
            "target": {"type": "AverageValue", "averageValue": per_pod},
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity for a float: whole when whole, else milli-units (0.1 ->
    ``100m``), else micro-units (0.0005 -> ``500u``, which milli-units would round to 0)."""
    micro = round(value * 1_000_000)
    if micro % 1_000_000 == 0:
        return str(micro // 1_000_000)
    return f"{micro // 1000}m" if micro % 1000 == 0 else f"{micro}u"


def horizontal_pod_autoscaler(engine: Engine, role: str) -> Manifest:
    section = autoscaled(engine, role)
    assert section is not None
    if isinstance(section, ProcessorAutoscaling):
        metrics = [_lag_metric(engine, section)]
    else:
        metrics = [_latency_metric(engine, section)]
        if section.requests_per_replica is not None:
            metrics.append(_requests_metric(section))
    return {
        "apiVersion": HPA_API,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(engine, child_name(engine, role), role),
        "spec": {
            "scaleTargetRef": _target(engine, role),
            "minReplicas": max(1, min_replicas(engine, role)),
            "maxReplicas": max_replicas(engine, role),
            "metrics": metrics,
            "behavior": _behavior(section),
        },
    }


# -- KEDA ----------------------------------------------------------------------------------------


SASL_MODES = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
}


def trigger_authentication(engine: Engine) -> Manifest | None:
    """The Kafka credentials of the spec for KEDA's kafka trigger (the same Secret keys the
    roles read), or None for a PLAINTEXT Kafka."""
    kafka = engine.spec.kafka
    keys: list[tuple[str, str, str]] = []  # (KEDA's parameter, Secret, key)
    if kafka.sasl is not None:
        keys.append(("username", kafka.sasl.secret_name, kafka.sasl.username_key))
        keys.append(("password", kafka.sasl.secret_name, kafka.sasl.password_key))
    if kafka.tls is not None:
        keys.append(("ca", kafka.tls.secret_name, kafka.tls.ca_key))
        if kafka.tls.certificate_key and kafka.tls.key_key:
            keys.append(("cert", kafka.tls.secret_name, kafka.tls.certificate_key))
            keys.append(("key", kafka.tls.secret_name, kafka.tls.key_key))
    refs = [{"parameter": p, "name": name, "key": key} for p, name, key in keys]
    if not refs:
        return None
    return {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": _metadata(engine, child_name(engine, "processor-kafka"), "processor"),
        "spec": {"secretTargetRef": refs},
    }


def _kafka_trigger(engine: Engine, section: ProcessorAutoscaling) -> dict[str, Any]:
    kafka = engine.spec.kafka
    trigger: dict[str, Any] = {
        "type": "kafka",
        "name": "consumer-lag",
        "metadata": {
            "bootstrapServers": kafka.bootstrap_servers,
            "consumerGroup": kafka.processor_group,
            "topic": kafka.topic,
            "lagThreshold": str(section.lag_per_replica),
            "activationLagThreshold": str(section.activation_lag),
            # The processor starts a new group at the log's start (auto.offset.reset
            # earliest): count its lag the same way.
            "offsetResetPolicy": "earliest",
            # Never more replicas than partitions with lag to share.
            "allowIdleConsumers": "false",
            # No "version": KEDA's default (Kafka 1.0 requests: Metadata v5, OffsetFetch
            # v3, ListOffsets v1) is above the request versions Kafka 4 dropped, and the
            # KEDA loop test reads the lag from a Kafka 4.1 broker with it.
        },
    }
    if kafka.sasl is not None:
        trigger["metadata"]["sasl"] = SASL_MODES[kafka.sasl.mechanism]
    if kafka.tls is not None:
        trigger["metadata"]["tls"] = "enable"
    if kafka.sasl is not None or kafka.tls is not None:
        trigger["authenticationRef"] = {"name": child_name(engine, "processor-kafka")}
    return trigger


def _promql_selector(engine: Engine) -> str:
    return f'namespace="{engine.namespace}",service="{child_name(engine, "api")}"'


def latency_query(engine: Engine, quantile: float) -> str:
    selector = _promql_selector(engine)
    return (
        f"histogram_quantile({quantile}, sum by (le) "
        f"(rate(recommendation_latency_seconds_bucket{{{selector}}}[{RATE_WINDOW}])))"
    )


def requests_query(engine: Engine) -> str:
    selector = _promql_selector(engine)
    return f"sum(rate(recommendation_latency_seconds_count{{{selector}}}[{RATE_WINDOW}]))"


def _prometheus_triggers(engine: Engine, section: ApiAutoscaling) -> list[dict[str, Any]]:
    address = engine.spec.autoscaling.prometheus_address
    triggers: list[dict[str, Any]] = [
        {
            "type": "prometheus",
            "name": "latency",
            # One figure for the whole api (not per pod): replicas grow with its ratio to
            # the threshold.
            "metricType": "Value",
            "metadata": {
                "serverAddress": address,
                "query": latency_query(engine, section.latency.quantile),
                "threshold": repr(section.latency.threshold_seconds),
                "ignoreNullValues": "true",
            },
        }
    ]
    if section.requests_per_replica is not None:
        triggers.append(
            {
                "type": "prometheus",
                "name": "requests",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": address,
                    "query": requests_query(engine),
                    "threshold": repr(section.requests_per_replica),
                    "ignoreNullValues": "true",
                },
            }
        )
    return triggers


def hpa_name(engine_name: str, role: str, chosen: str) -> str:
    """The HPA that drives a role: the operator's own, or the one KEDA makes for a
    ScaledObject (KEDA's default name, ``keda-hpa-<ScaledObject>``)."""
    name = f"{engine_name}-{role}"
    return name if chosen == "HPA" else f"keda-hpa-{name}"


def scaled_object(engine: Engine, role: str) -> Manifest:
    section = autoscaled(engine, role)
    assert section is not None
    if isinstance(section, ProcessorAutoscaling):
        triggers = [_kafka_trigger(engine, section)]
        fallback = section.fallback_replicas
    else:
        triggers = _prometheus_triggers(engine, section)
        fallback = None
    spec: dict[str, Any] = {
        "scaleTargetRef": _target(engine, role),
        "pollingInterval": 15,
        # Only the step between zero and one replica: the HPA's behavior does the rest.
        "cooldownPeriod": 300,
        "minReplicaCount": min_replicas(engine, role),
        "maxReplicaCount": max_replicas(engine, role),
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(section)}},
        "triggers": triggers,
    }
    if fallback is not None:
        replicas = min(fallback, max_replicas(engine, role))
        spec["fallback"] = {"failureThreshold": 3, "replicas": replicas}
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": _metadata(engine, child_name(engine, role), role),
        "spec": spec,
    }


def autoscalers(engine: Engine) -> list[Manifest]:
    """The autoscaler of each autoscaled role, of the provider chosen."""
    keda = provider(engine) == "KEDA"
    out: list[Manifest] = []
    if keda and autoscaled(engine, "processor") is not None:
        credentials = trigger_authentication(engine)
        if credentials is not None:
            out.append(credentials)
    build = scaled_object if keda else horizontal_pod_autoscaler
    return out + [build(engine, r) for r in AUTOSCALED if autoscaled(engine, r) is not None]
