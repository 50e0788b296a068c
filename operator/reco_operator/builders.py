"""Pure builders: a ``RecoEngine`` (its name, namespace, spec and what the cluster says) to
the manifests of its children. No API calls here; tests/operator/test_builders.py covers
them without a cluster.

Every child is named ``<engine>-<part>``, labelled with the app.kubernetes.io labels (the
instance is the engine's name), and owned by the engine (deleting the RecoEngine deletes
them through garbage collection).

A role's pod template carries ``recoengine.io/config-hash``: a hash of everything the role
reads that the Deployment itself does not show (its engine settings, the contents of the
Secrets it references). A change rolls exactly the roles it concerns: new weights roll the
api, not the processor; a rotated Redis password rolls every role that reads Redis.

The api talks to Kafka only when the engine runs experiments (``spec.experiments``: it
writes an impression record for each recommendation it serves in one); without them it gets
neither the Kafka settings nor its credentials, and a rotated Kafka password leaves it be.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from reco.settings import ROLE_SETTINGS, EngineSettings
from reco_operator import FIELD_MANAGER, GROUP, KIND, VERSION
from reco_operator.spec import ROLES, RecoEngineSpec, SecretKeyRef

Manifest = dict[str, Any]

PORTS = {"api": 8080, "ingest": 8081, "processor": 8082, "archiver": 8083}
SERVED = ("ingest", "api")
"""Roles with a Service for clients; the processor and archiver get headless ones for metrics."""
RUN_AS = 10001
CONFIG_HASH = f"{GROUP}/config-hash"
KAFKA_TLS_DIR = "/etc/reco/kafka-tls"


@dataclass(frozen=True)
class Engine:
    """What the builders need to know about one RecoEngine."""

    name: str
    namespace: str
    uid: str
    spec: RecoEngineSpec
    partitions: int
    """Partitions the topic really has (may exceed the spec's, never less)."""
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    """Decoded data of the Secrets the spec references, by Secret name."""
    service_monitor_crd: bool = False
    keda_crd: bool = False
    """KEDA's ScaledObject CRD is installed (autoscaling provider Auto picks KEDA)."""


def labels(engine: Engine, component: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "reco-engine",
        "app.kubernetes.io/instance": engine.name,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        "app.kubernetes.io/part-of": "reco-engine",
        "app.kubernetes.io/version": engine.spec.image.tag[:63],
    }
    if component is not None:
        out["app.kubernetes.io/component"] = component
    return out


def selector(engine: Engine, component: str) -> dict[str, str]:
    """The labels a role's Service and Deployment select by: stable across versions."""
    return {
        "app.kubernetes.io/name": "reco-engine",
        "app.kubernetes.io/instance": engine.name,
        "app.kubernetes.io/component": component,
    }


def _metadata(engine: Engine, name: str, component: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": engine.namespace,
        "labels": labels(engine, component),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": engine.name,
                "uid": engine.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def child_name(engine: Engine, part: str) -> str:
    return f"{engine.name}-{part}"


# -- engine settings ----------------------------------------------------------------------------


def engine_env(spec: RecoEngineSpec) -> dict[str, str]:
    """Every engine setting (``spec.engine``'s and ``spec.experiments``) as the RECO_*
    variable the engine reads: a string as it is, anything else as JSON, models in their
    snake_case fields."""
    settings = spec.engine_settings()
    env: dict[str, str] = {}
    for key in sorted(EngineSettings.model_fields):
        value = getattr(settings, key)
        if isinstance(value, BaseModel):
            value = value.model_dump()
        elif isinstance(value, list):
            # The experiments: a variant's unset overrides (None) keep the served values,
            # as an absent field does.
            value = [
                v.model_dump(mode="json", exclude_none=True) if isinstance(v, BaseModel) else v
                for v in value
            ]
        env[f"RECO_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def config_map(engine: Engine) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(engine, child_name(engine, "engine")),
        "data": engine_env(engine.spec),
    }


def role_settings_env(engine: Engine, role: str) -> dict[str, str]:
    """The part of the engine settings ``role`` reads."""
    env = engine_env(engine.spec)
    return {f"RECO_{k.upper()}": env[f"RECO_{k.upper()}"] for k in sorted(ROLE_SETTINGS[role])}


REPLAY_READS = ("processor", "api")
"""The one-shot jobs that replay the archive through the engine (``reco tune``, ``reco
train --ranker``) build features as the processor does and rank as the api does (the
search starts from the weights the api serves; the ranker learns to order what the api
would have ranked): they read the settings of both."""


def replay_settings_env(engine: Engine) -> dict[str, str]:
    """The engine settings a replay of the archive reads (``reco tune``, ``reco train
    --ranker``): the processor's and the api's, once each."""
    env: dict[str, str] = {}
    for role in REPLAY_READS:
        env.update(role_settings_env(engine, role))
    return dict(sorted(env.items()))


# -- Secrets ------------------------------------------------------------------------------------


def uses_kafka(spec: RecoEngineSpec, role: str) -> bool:
    """Whether ``role`` talks to Kafka: ingest, the processor and the archiver always, the
    api only to write impression records, that is, when the engine runs experiments."""
    return role != "api" or bool(spec.experiments)


def secret_refs(spec: RecoEngineSpec, role: str) -> list[SecretKeyRef]:
    """The Secret keys ``role`` reads (its config hash covers their contents)."""
    refs = []
    if role in ("processor", "api"):
        refs.append(spec.redis.url_secret_ref)
    if role in ("processor", "archiver", "api"):
        refs.append(spec.postgres.url_secret_ref)
    if role in SERVED:
        keys = (spec.access.api_keys_secret_ref, spec.access.read_api_keys_secret_ref)
        refs += [r for r in keys if r is not None]
    if uses_kafka(spec, role):
        refs += _kafka_refs(spec)
    return refs


def _kafka_refs(spec: RecoEngineSpec) -> list[SecretKeyRef]:
    refs = []
    sasl = spec.kafka.sasl
    if sasl is not None:
        refs.append(SecretKeyRef(name=sasl.secret_name, key=sasl.username_key))
        refs.append(SecretKeyRef(name=sasl.secret_name, key=sasl.password_key))
    tls = spec.kafka.tls
    if tls is not None:
        for key in (tls.ca_key, tls.certificate_key, tls.key_key):
            if key:
                refs.append(SecretKeyRef(name=tls.secret_name, key=key))
    return refs


def all_secret_refs(spec: RecoEngineSpec) -> list[SecretKeyRef]:
    seen: dict[tuple[str, str], SecretKeyRef] = {}
    for role in ROLES:
        for ref in secret_refs(spec, role):
            seen.setdefault((ref.name, ref.key), ref)
    if spec.training is not None:
        for ref in _training_refs(spec):
            seen.setdefault((ref.name, ref.key), ref)
    return list(seen.values())


def missing_secrets(engine_spec: RecoEngineSpec, secrets: dict[str, dict[str, str]]) -> list[str]:
    """``name/key`` of each referenced Secret key that does not exist."""
    return [
        f"{ref.name}/{ref.key}"
        for ref in all_secret_refs(engine_spec)
        if ref.key not in secrets.get(ref.name, {})
    ]


def _training_refs(spec: RecoEngineSpec) -> list[SecretKeyRef]:
    return [spec.postgres.url_secret_ref]


def config_hash(engine: Engine, role: str) -> str:
    """``role`` is one of ROLES, or ``train`` / ``tune`` / ``rank`` for the CronJobs."""
    one_shot = role in ("train", "tune", "rank")
    refs = _training_refs(engine.spec) if one_shot else secret_refs(engine.spec, role)
    if role == "train":
        settings: dict[str, str] = {}
    elif role in ("tune", "rank"):
        settings = replay_settings_env(engine)
    else:
        settings = role_settings_env(engine, role)
    payload = {
        "settings": settings,
        "secrets": {
            f"{r.name}/{r.key}": engine.secrets.get(r.name, {}).get(r.key, "") for r in refs
        },
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:16]


# -- pods ---------------------------------------------------------------------------------------


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _role_env(engine: Engine, role: str) -> list[dict[str, Any]]:
    spec = engine.spec
    kafka = spec.kafka
    with_kafka = uses_kafka(spec, role)
    env: list[dict[str, Any]] = [
        {"name": "RECO_HOST", "value": "0.0.0.0"},
        {"name": "RECO_PORT", "value": str(PORTS[role])},
        {"name": "RECO_LOG_FORMAT", "value": "json"},
    ]
    if with_kafka:
        env += [
            {"name": "RECO_KAFKA_BOOTSTRAP", "value": kafka.bootstrap_servers},
            {"name": "RECO_TOPIC", "value": kafka.topic},
            {"name": "RECO_TOPIC_PARTITIONS", "value": str(engine.partitions)},
            {"name": "RECO_TOPIC_REPLICATION", "value": str(kafka.replication_factor)},
            {"name": "RECO_KAFKA_SECURITY_PROTOCOL", "value": kafka.security_protocol},
        ]
    env.append({"name": "RECO_REDIS_PREFIX", "value": spec.redis.prefix})
    if role == "processor":
        env.append({"name": "RECO_GROUP", "value": kafka.processor_group})
    if role == "archiver":
        env.append({"name": "RECO_GROUP", "value": kafka.archiver_group})
    if role in ("processor", "api"):
        env.append(_secret_env("RECO_REDIS_URL", spec.redis.url_secret_ref))
    if role in ("processor", "archiver", "api"):
        env.append(_secret_env("RECO_DATABASE_URL", spec.postgres.url_secret_ref))
    if with_kafka:
        env += _kafka_security_env(spec)
    if role in SERVED:
        env += _access_env(spec)
    return env


def _kafka_security_env(spec: RecoEngineSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    sasl, tls = spec.kafka.sasl, spec.kafka.tls
    if sasl is not None:
        user = SecretKeyRef(name=sasl.secret_name, key=sasl.username_key)
        password = SecretKeyRef(name=sasl.secret_name, key=sasl.password_key)
        env.append({"name": "RECO_KAFKA_SASL_MECHANISM", "value": sasl.mechanism})
        env.append(_secret_env("RECO_KAFKA_SASL_USERNAME", user))
        env.append(_secret_env("RECO_KAFKA_SASL_PASSWORD", password))
    if tls is not None:
        files = {"RECO_KAFKA_SSL_CA_LOCATION": tls.ca_key}
        if tls.certificate_key and tls.key_key:
            files["RECO_KAFKA_SSL_CERTIFICATE_LOCATION"] = tls.certificate_key
            files["RECO_KAFKA_SSL_KEY_LOCATION"] = tls.key_key
        env += [{"name": n, "value": f"{KAFKA_TLS_DIR}/{key}"} for n, key in files.items()]
    return env


def _access_env(spec: RecoEngineSpec) -> list[dict[str, Any]]:
    access = spec.access
    env: list[dict[str, Any]] = [
        {"name": "RECO_RATE_LIMIT_PER_S", "value": repr(access.rate_limit_per_second)}
    ]
    if access.api_keys_secret_ref is not None:
        env.append(_secret_env("RECO_API_KEYS", access.api_keys_secret_ref))
    if access.read_api_keys_secret_ref is not None:
        env.append(_secret_env("RECO_READ_API_KEYS", access.read_api_keys_secret_ref))
    return env


def _volumes(
    spec: RecoEngineSpec, *, kafka: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the container's mounts: a writable /tmp on a read-only root,
    and the Kafka TLS Secret when there is one (and ``kafka``: the pod talks to Kafka)."""
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if kafka and spec.kafka.tls is not None:
        tls_secret = {"secretName": spec.kafka.tls.secret_name}
        volumes.append({"name": "kafka-tls", "secret": tls_secret})
        mounts.append({"name": "kafka-tls", "mountPath": KAFKA_TLS_DIR, "readOnly": True})
    return volumes, mounts


def pod_security_context() -> dict[str, Any]:
    """Pod Security "restricted": non-root, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(path: str, *, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _pod_spec(engine: Engine, role: str) -> dict[str, Any]:
    spec = engine.spec
    component = spec.component(role)
    volumes, mounts = _volumes(spec, kafka=uses_kafka(spec, role))
    container: dict[str, Any] = {
        "name": role,
        "image": spec.image.reference,
        "imagePullPolicy": spec.image.pull_policy,
        "args": [role],
        "ports": [{"name": "http", "containerPort": PORTS[role], "protocol": "TCP"}],
        "env": _role_env(engine, role) + _dump_all(component.env),
        "envFrom": [{"configMapRef": {"name": child_name(engine, "engine")}}],
        "resources": component.resources.model_dump(by_alias=True, exclude_defaults=True),
        # Slow starts (a schema migration, a first connection) get a minute before the
        # liveness probe may restart them.
        "startupProbe": _probe("/health/live", period=2, timeout=2, failures=30),
        "livenessProbe": _probe("/health/live", period=10, timeout=3, failures=3),
        "readinessProbe": _probe("/health/ready", period=5, timeout=3, failures=2),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    pod = _pod(
        spec,
        container,
        volumes,
        node_selector=component.node_selector,
        tolerations=component.tolerations,
        # SIGTERM finishes the batch in hand and leaves the consumer group; give it room.
        terminationGracePeriodSeconds=30,
    )
    if component.affinity:
        pod["affinity"] = component.affinity
    if component.topology_spread_constraints:
        pod["topologySpreadConstraints"] = component.topology_spread_constraints
    return pod


def _pod(
    spec: RecoEngineSpec,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    *,
    node_selector: dict[str, str],
    tolerations: Sequence[BaseModel],
    **extra: Any,
) -> dict[str, Any]:
    """What every pod of the engine shares: restricted security, no service links and no
    API token (the engine never calls the Kubernetes API), the pull secrets, scheduling."""
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        **extra,
    }
    if spec.image.pull_secrets:
        pod["imagePullSecrets"] = [{"name": s.name} for s in spec.image.pull_secrets]
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod["tolerations"] = _dump_all(tolerations)
    return pod


def _dump_all(models: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [m.model_dump(by_alias=True, exclude_none=True) for m in models]


def deployment(engine: Engine, role: str) -> Manifest:
    """An autoscaled role's Deployment leaves ``spec.replicas`` out: the autoscaler owns it,
    and the operator never sets it back."""
    component = engine.spec.component(role)
    body: dict[str, Any] = {
        "selector": {"matchLabels": selector(engine, role)},
        "revisionHistoryLimit": 5,
        "strategy": {
            "type": "RollingUpdate",
            # Never below the desired count while rolling: consumers rebalance, the api
            # keeps its capacity.
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": labels(engine, role),
                "annotations": {CONFIG_HASH: config_hash(engine, role)},
            },
            "spec": _pod_spec(engine, role),
        },
    }
    if engine.spec.autoscaling.of(role) is None:
        body = {"replicas": component.replicas, **body}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(engine, child_name(engine, role), role),
        "spec": body,
    }


def service(engine: Engine, role: str) -> Manifest:
    spec: dict[str, Any] = {
        "selector": selector(engine, role),
        "ports": [{"name": "http", "port": PORTS[role], "targetPort": "http", "protocol": "TCP"}],
    }
    if role not in SERVED:
        spec["clusterIP"] = "None"  # metrics only: one endpoint per pod for Prometheus
    else:
        spec["type"] = "ClusterIP"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(engine, child_name(engine, role), role),
        "spec": spec,
    }


def pod_disruption_budget(engine: Engine, role: str) -> Manifest:
    budget = engine.spec.component(role).pod_disruption_budget
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(engine, child_name(engine, role), role),
        "spec": {
            "maxUnavailable": budget.max_unavailable,
            "selector": {"matchLabels": selector(engine, role)},
            # A pod that never became ready may always go: it serves nothing.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def training_cron_job(engine: Engine) -> Manifest:
    spec = engine.spec
    training = spec.training
    assert training is not None
    args = ["train", "--algorithm", training.algorithm]
    if training.since_days is not None:
        args += ["--since-days", repr(training.since_days)]
    return _cron_job(
        engine,
        "train",
        args=args,
        env=[],
        schedule=training.schedule,
        suspend=training.suspend,
        resources=training.resources,
        active_deadline_seconds=training.active_deadline_seconds,
    )


def tune_cron_job(engine: Engine) -> Manifest:
    """``reco tune`` on a schedule: it reads the archive as ``reco train`` does, and the
    settings the processor builds features with and the api serves with (its search starts
    from them); it publishes a settings override the api replicas load like a model."""
    spec = engine.spec
    assert spec.training is not None
    tune = spec.training.tune
    assert tune is not None
    args = [
        "tune",
        "--protocol", tune.protocol,
        "--test-days", repr(tune.test_days),
        "--budget-s", str(tune.budget_seconds),
    ]  # fmt: skip
    if tune.since_days is not None:
        args += ["--since-days", repr(tune.since_days)]
    # The item vectors of the embedding term are trained as reco train trains them.
    env = [{"name": "RECO_ALGORITHM", "value": spec.training.algorithm}]
    env += [{"name": k, "value": v} for k, v in replay_settings_env(engine).items()]
    return _cron_job(
        engine,
        "tune",
        args=args,
        env=env,
        schedule=tune.schedule,
        suspend=tune.suspend,
        resources=tune.resources,
        active_deadline_seconds=tune.active_deadline_seconds,
    )


def ranker_cron_job(engine: Engine) -> Manifest:
    """``reco train --ranker`` on a schedule: it replays the archive through the engine with
    the settings the processor builds features with and the api serves with, trains a
    LambdaRank ranker on what the api would have ranked, and publishes it as a ``ranker``
    version the api replicas swap in (only when it beats the weighted sum)."""
    spec = engine.spec
    assert spec.training is not None
    ranker = spec.training.ranker
    assert ranker is not None
    args = ["train", "--ranker"]
    if ranker.since_days is not None:
        args += ["--since-days", repr(ranker.since_days)]
    env = [
        # When the api serves item vectors, the replay trains them as reco train does.
        {"name": "RECO_ALGORITHM", "value": spec.training.algorithm},
        {"name": "RECO_RANKER_CANDIDATES", "value": str(ranker.candidates)},
        {"name": "RECO_RANKER_MAX_REQUESTS", "value": str(ranker.max_requests)},
        {"name": "RECO_RANKER_TARGET", "value": ranker.target},
        {"name": "RECO_RANKER_CATALOG", "value": "true" if ranker.catalog else "false"},
    ]
    env += [{"name": k, "value": v} for k, v in replay_settings_env(engine).items()]
    return _cron_job(
        engine,
        "rank",
        args=args,
        env=env,
        schedule=ranker.schedule,
        suspend=ranker.suspend,
        resources=ranker.resources,
        active_deadline_seconds=ranker.active_deadline_seconds,
    )


def _cron_job(
    engine: Engine,
    part: str,
    *,
    args: list[str],
    env: list[dict[str, Any]],
    schedule: str,
    suspend: bool,
    resources: BaseModel,
    active_deadline_seconds: int,
) -> Manifest:
    """A one-shot command of the engine on a schedule, never two runs at once, on the nodes
    ``spec.training`` selects; it reads the PostgreSQL archive, and ``env`` comes after
    what every such command needs."""
    spec = engine.spec
    training = spec.training
    assert training is not None
    volumes, mounts = _volumes(spec)
    container: dict[str, Any] = {
        "name": part,
        "image": spec.image.reference,
        "imagePullPolicy": spec.image.pull_policy,
        "args": args,
        "env": [
            {"name": "RECO_LOG_FORMAT", "value": "json"},
            _secret_env("RECO_DATABASE_URL", spec.postgres.url_secret_ref),
            # gensim and implicit write their caches under HOME.
            {"name": "HOME", "value": "/tmp"},
            *env,
        ],
        "resources": resources.model_dump(by_alias=True, exclude_defaults=True),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    pod = _pod(
        spec,
        container,
        volumes,
        node_selector=training.node_selector,
        tolerations=training.tolerations,
        restartPolicy="Never",
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(engine, child_name(engine, part), part),
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "suspend": suspend,
            # Two trainings (or two searches) at once would publish versions out of order.
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels(engine, part)},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": active_deadline_seconds,
                    "template": {
                        "metadata": {
                            "labels": labels(engine, part),
                            "annotations": {CONFIG_HASH: config_hash(engine, part)},
                        },
                        "spec": pod,
                    },
                },
            },
        },
    }


def service_monitor(engine: Engine) -> Manifest:
    monitor = engine.spec.monitoring.service_monitor
    metadata = _metadata(engine, engine.name)
    metadata["labels"] = {**metadata["labels"], **monitor.labels}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "reco-engine",
                    "app.kubernetes.io/instance": engine.name,
                }
            },
            "endpoints": [{"port": "http", "path": "/metrics", "interval": monitor.interval}],
        },
    }


def network_policy(engine: Engine, role: str) -> Manifest:
    """Admit only the role's port: from the configured peers (or anyone) for ingest and
    the api, from the namespace for the metrics of the processor and archiver. Egress is
    left open: the roles reach Kafka, Redis and PostgreSQL wherever those run (the api
    reaches Kafka too when the engine runs experiments)."""
    peers = engine.spec.network_policy.ingress_from
    if role in SERVED:
        ingress: dict[str, Any] = {"ports": [{"port": PORTS[role], "protocol": "TCP"}]}
        if peers:
            ingress["from"] = peers
    else:
        ingress = {
            "ports": [{"port": PORTS[role], "protocol": "TCP"}],
            "from": [{"podSelector": {}}],
        }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(engine, child_name(engine, role), role),
        "spec": {
            "podSelector": {"matchLabels": selector(engine, role)},
            "policyTypes": ["Ingress"],
            "ingress": [ingress],
        },
    }


# -- all of it ------------------------------------------------------------------------------------


def children(engine: Engine) -> list[Manifest]:
    """Every child the spec asks for but the autoscalers (reco_operator.autoscaling), in
    the order to apply them (config before the pods that read it)."""
    spec = engine.spec
    out: list[Manifest] = [config_map(engine)]
    for role in ROLES:
        out.append(service(engine, role))
    for role in ROLES:
        out.append(deployment(engine, role))
    for role in ROLES:
        if spec.component(role).pod_disruption_budget.enabled:
            out.append(pod_disruption_budget(engine, role))
    if spec.training is not None:
        out.append(training_cron_job(engine))
        if spec.training.tune is not None:
            out.append(tune_cron_job(engine))
        if spec.training.ranker is not None:
            out.append(ranker_cron_job(engine))
    monitor = spec.monitoring.service_monitor.enabled
    if monitor or (monitor is None and engine.service_monitor_crd):
        out.append(service_monitor(engine))
    if spec.network_policy.enabled:
        out += [network_policy(engine, role) for role in ROLES]
    return out


CHILD_KINDS: tuple[tuple[str, str, str], ...] = (
    ("", "v1", "ConfigMap"),
    ("", "v1", "Service"),
    ("apps", "v1", "Deployment"),
    ("policy", "v1", "PodDisruptionBudget"),
    ("batch", "v1", "CronJob"),
    ("monitoring.coreos.com", "v1", "ServiceMonitor"),
    ("networking.k8s.io", "v1", "NetworkPolicy"),
    ("autoscaling", "v2", "HorizontalPodAutoscaler"),
    ("keda.sh", "v1alpha1", "ScaledObject"),
    ("keda.sh", "v1alpha1", "TriggerAuthentication"),
)
"""Every kind the operator may create, to find the children a spec no longer asks for."""
