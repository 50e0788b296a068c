"""The ``RecoEngine`` spec: the source of the CRD's schema and the operator's typed view of it.

Field names are the engine's in snake_case and the CRD's in camelCase (pydantic aliases).
``engine`` is the engine's own settings model (``reco.settings.EngineSettings``), turned
into camelCase by :func:`engine_key` (``popularity_half_life_s`` becomes
``popularityHalfLifeSeconds``); its schema is generated from that model, so that a setting
added to the engine appears in the CRD the next time ``make crd`` runs (a test fails until
it does). The engine settings in ``SPEC_SETTINGS`` (``experiments``) are set at the top of
the spec instead, as the engine's own models (``reco.settings.Experiment``), and
``spec.engine`` refuses them, so that each has one place.

CEL rules travel with the models (``x-kubernetes-validations``): the API server refuses a
spec that breaks one, with the rule's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from reco import __version__
from reco.settings import EngineSettings, Experiment, camel_key

DEFAULT_REPOSITORY = "ghcr.io/reco-engine/reco-engine"
ROLES = ("ingest", "processor", "archiver", "api")


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """``x-kubernetes-validations`` for a model or field: (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


PRESERVE: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
"""A subtree whose shape is Kubernetes' own (affinity, topology spread, valueFrom): the API
server keeps it as given and the Deployment's own validation checks it."""


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretKeyRef(CamelModel):
    """A key of a Secret in the RecoEngine's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key within the Secret.")


class LocalObjectReference(CamelModel):
    name: str = Field(min_length=1)


class ImageSpec(CamelModel):
    """The engine image: one image for every role, the role is its command."""

    repository: str = Field(DEFAULT_REPOSITORY, min_length=1, description="Image repository.")
    tag: str = Field(
        __version__, min_length=1, description="Image tag; defaults to the operator's version."
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="When the kubelet pulls the image."
    )
    pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets to pull the image from a private registry."
    )

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class KafkaSaslSpec(CamelModel):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism."
    )
    secret_name: str = Field(min_length=1, description="Secret holding the credentials.")
    username_key: str = Field("username", min_length=1)
    password_key: str = Field("password", min_length=1)


class KafkaTlsSpec(CamelModel):
    secret_name: str = Field(
        min_length=1, description="Secret with the CA bundle (and a client cert/key for mTLS)."
    )
    ca_key: str = Field("ca.crt", min_length=1, description="Key of the CA bundle (PEM).")
    certificate_key: str | None = Field(None, description="Key of the client certificate.")
    key_key: str | None = Field(None, description="Key of the client private key.")


class KafkaSpec(CamelModel):
    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!self.securityProtocol.startsWith('SASL') || has(self.sasl)",
                "securityProtocol SASL_PLAINTEXT or SASL_SSL needs spec.kafka.sasl "
                "(the mechanism and the Secret with the credentials)",
            ),
            (
                "!self.securityProtocol.endsWith('SSL') || has(self.tls)",
                "securityProtocol SSL or SASL_SSL needs spec.kafka.tls (the Secret with the "
                "CA bundle that verifies the brokers)",
            ),
            (
                "!has(oldSelf.partitions) || self.topic != oldSelf.topic "
                "|| self.partitions >= oldSelf.partitions",
                "Kafka cannot take partitions away from a topic: spec.kafka.partitions can "
                "only grow (or set a new spec.kafka.topic)",
            ),
        )
    )

    bootstrap_servers: str = Field(
        min_length=1, description="Kafka brokers, host:port[,host:port...]."
    )
    topic: str = Field(
        "reco.events",
        pattern=r"^[a-zA-Z0-9._-]{1,249}$",
        description="The event topic; created by the operator when missing.",
    )
    partitions: int = Field(
        12,
        ge=1,
        le=10000,
        description=(
            "Partitions of the topic: the most processors that can share the work. Raised on "
            "the broker when raised here; never lowered."
        ),
    )
    replication_factor: int = Field(1, ge=1, le=32, description="Replicas of each partition.")
    processor_group: str = Field("reco-processor", min_length=1)
    archiver_group: str = Field("reco-archiver", min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl: KafkaSaslSpec | None = None
    tls: KafkaTlsSpec | None = None


class RedisSpec(CamelModel):
    url_secret_ref: SecretKeyRef = Field(
        description=(
            "redis://, rediss:// or unix:// URL (with its password) in a Secret; "
            "redis+sentinel://host:port[,host:port...]/<service>[/<db>] for the master "
            "Sentinels watch; redis+cluster://host:port[,host:port...] for a Redis Cluster."
        )
    )
    prefix: str = Field("reco:", min_length=1, description="Prefix of every feature key.")


class PostgresSpec(CamelModel):
    url_secret_ref: SecretKeyRef = Field(
        description="postgresql:// URL (with its password) in a Secret."
    )


class ResourceRequirements(CamelModel):
    requests: dict[str, int | str] = Field(default_factory=dict)
    limits: dict[str, int | str] = Field(default_factory=dict)


class Toleration(CamelModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class EnvVar(CamelModel):
    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str | None = None
    value_from: dict[str, Any] | None = Field(None, json_schema_extra=PRESERVE)


class PodDisruptionBudgetSpec(CamelModel):
    enabled: bool = Field(True, description="A PodDisruptionBudget for this component.")
    max_unavailable: int = Field(
        1, ge=1, description="Pods a voluntary disruption (a node drain) may take at once."
    )


class ComponentSpec(CamelModel):
    """Replicas and scheduling of one role's Deployment."""

    replicas: int = Field(1, ge=0, le=1000, description="Pods of this role.")
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Container requests and limits."
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict, json_schema_extra=PRESERVE)
    topology_spread_constraints: list[dict[str, Any]] = Field(
        default_factory=list, json_schema_extra={"items": {"type": "object", **PRESERVE}}
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Extra environment variables (RECO_* overrides)."
    )
    pod_disruption_budget: PodDisruptionBudgetSpec = Field(default_factory=PodDisruptionBudgetSpec)


class IngestSpec(ComponentSpec):
    replicas: int = Field(2, ge=0, le=1000, description="Pods of ingest (stateless).")


class ProcessorSpec(ComponentSpec):
    replicas: int = Field(
        2, ge=0, le=1000, description="Pods of the processor: at most one per partition works."
    )


class ArchiverSpec(ComponentSpec):
    replicas: int = Field(1, ge=0, le=1000, description="Pods of the archiver.")


class ApiSpec(ComponentSpec):
    replicas: int = Field(2, ge=0, le=1000, description="Pods of the api (stateless).")


_TUNE_DEADLINE = (
    "activeDeadlineSeconds must be greater than budgetSeconds: the Job would be killed "
    "before the search ends, and a search that does not end publishes nothing"
)


class TuneSpec(CamelModel):
    """A CronJob running ``reco tune``: the request-time scoring weights searched on the
    shop's own archive (an inner time split), published as a settings override the api
    replicas load like a model."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("self.activeDeadlineSeconds > self.budgetSeconds", _TUNE_DEADLINE),
        )
    )

    schedule: str = Field("30 3 * * *", min_length=9, description="Cron schedule (UTC).")
    suspend: bool = False
    protocol: Literal["next", "user"] = Field(
        "next",
        description=(
            "next: the next item within sessions (shops); user: each user's last event "
            "left out (rating logs)."
        ),
    )
    test_days: float = Field(
        7.0, gt=0, description="The inner test window: sessions ending in the last N days."
    )
    since_days: float | None = Field(None, gt=0, description="Search on the last N days only.")
    budget_seconds: int = Field(
        900,
        ge=60,
        description="The search stops before a step that would end after this many seconds.",
    )
    active_deadline_seconds: int = Field(
        3600,
        ge=120,
        description=(
            "A run still going after this is stopped (publishing nothing); must exceed "
            "budgetSeconds."
        ),
    )
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)

    @model_validator(mode="after")
    def _deadline_after_budget(self) -> TuneSpec:
        if self.active_deadline_seconds <= self.budget_seconds:
            raise ValueError(_TUNE_DEADLINE)
        return self


class RankerSpec(CamelModel):
    """A CronJob running ``reco train --ranker``: examples replayed from the archive through
    the engine, LightGBM LambdaRank on them, published as a ``ranker`` version the api
    replicas order their candidates by."""

    schedule: str = Field("0 4 * * *", min_length=9, description="Cron schedule (UTC).")
    suspend: bool = False
    since_days: float | None = Field(None, gt=0, description="Train on the last N days only.")
    candidates: int = Field(
        200,
        ge=2,
        le=2000,
        description=(
            "Candidates of the weighted sum the ranker orders (RECO_RANKER_CANDIDATES): the "
            "replay records this many per request."
        ),
    )
    max_requests: int = Field(
        100_000,
        ge=100,
        description=(
            "Requests recorded at most (RECO_RANKER_MAX_REQUESTS); beyond it every k-th is kept."
        ),
    )
    catalog: bool = Field(
        True,
        description=(
            "Learn from the catalog features (RECO_RANKER_CATALOG: category match, price "
            "ratio, age); false: without them, and the api reranks without reading the "
            "catalog, at a lower cost per request."
        ),
    )
    target: Literal["next", "purchase"] = Field(
        "next",
        description=(
            "What the ranker learns to put first (RECO_RANKER_TARGET): the next event's item, "
            "or the item of each purchase (learning from the requests before purchases)."
        ),
    )
    active_deadline_seconds: int = Field(
        3600, ge=60, description="A run still going after this is stopped (publishing nothing)."
    )
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)


class TrainingSpec(CamelModel):
    """A CronJob running ``reco train``: item vectors from the archive, a new model version."""

    schedule: str = Field("0 3 * * *", min_length=9, description="Cron schedule (UTC).")
    suspend: bool = False
    algorithm: Literal["als", "item2vec"] = "als"
    since_days: float | None = Field(None, gt=0, description="Train on the last N days only.")
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    active_deadline_seconds: int = Field(
        3600, ge=60, description="A training run still going after this is stopped."
    )
    tune: TuneSpec | None = Field(
        None,
        description=(
            "Set to run `reco tune` on a schedule (a second CronJob, <name>-tune): it searches "
            "the scoring weights on the archive and publishes them as a settings override the "
            "api replicas pick up. Its pods use this block's nodeSelector and tolerations."
        ),
    )
    ranker: RankerSpec | None = Field(
        None,
        description=(
            "Set to run `reco train --ranker` on a schedule (a CronJob, <name>-rank): it "
            "replays the archive through the engine with the settings the api serves, trains "
            "a LambdaRank ranker and publishes it as a `ranker` version the api replicas "
            "order their candidates by (spec.engine.useRanker). Its pods use this block's "
            "nodeSelector and tolerations."
        ),
    )


class ScalingPolicy(CamelModel):
    """At most value pods (or percent of the current pods) per periodSeconds."""

    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1)
    period_seconds: int = Field(60, ge=1, le=1800)


class ScalingRules(CamelModel):
    """One direction of scaling, as an autoscaling/v2 HPA's behavior spells it."""

    stabilization_window_seconds: int = Field(
        ge=0,
        le=3600,
        description=(
            "The autoscaler acts on the highest (up) or lowest (down) recommendation of this "
            "window: a short spike or dip inside it changes nothing."
        ),
    )
    select_policy: Literal["Max", "Min", "Disabled"] = Field(
        "Max", description="Of several policies, the one that allows the most (Max) change."
    )
    policies: list[ScalingPolicy] = Field(min_length=1, max_length=10)


def _up() -> ScalingRules:
    # Up at once, by up to 4 pods or double, whichever is more: lag and latency hurt now.
    return ScalingRules(
        stabilization_window_seconds=0,
        policies=[
            ScalingPolicy(type="Pods", value=4, period_seconds=60),
            ScalingPolicy(type="Percent", value=100, period_seconds=60),
        ],
    )


def _processor_down() -> ScalingRules:
    # Down after 5 quiet minutes, one pod a minute: every change of the group's members is
    # a rebalance that pauses consumption, so the processor steps down slowly.
    return ScalingRules(
        stabilization_window_seconds=300,
        policies=[ScalingPolicy(type="Pods", value=1, period_seconds=60)],
    )


def _api_down() -> ScalingRules:
    # Down after 5 quiet minutes, by at most half the pods a minute.
    return ScalingRules(
        stabilization_window_seconds=300,
        policies=[ScalingPolicy(type="Percent", value=50, period_seconds=60)],
    )


def _rules(factory: Callable[[], ScalingRules]) -> Any:
    """A field defaulting to ``factory()``, with that default in the CRD too (the API server
    fills it in, and a default must satisfy the schema's required fields)."""
    return Field(
        default_factory=factory,
        json_schema_extra={"default": factory().model_dump(by_alias=True)},
    )


class ProcessorBehavior(CamelModel):
    scale_up: ScalingRules = _rules(_up)
    scale_down: ScalingRules = _rules(_processor_down)


class ApiBehavior(CamelModel):
    scale_up: ScalingRules = _rules(_up)
    scale_down: ScalingRules = _rules(_api_down)


_BOUNDS = _cel(("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas"))


class ProcessorAutoscaling(CamelModel):
    """The processor by consumer lag: replicas = the group's lag / lagPerReplica."""

    model_config = ConfigDict(json_schema_extra=_BOUNDS)

    min_replicas: int = Field(
        1, ge=0, le=1000, description="Fewest pods; 0 (scale to zero) only with KEDA."
    )
    max_replicas: int = Field(
        10,
        ge=1,
        le=1000,
        description=(
            "Most pods. Above the topic's partitions it is capped to them (extra consumers "
            "would sit idle), unless raisePartitions is set."
        ),
    )
    lag_per_replica: int = Field(
        1000, ge=1, description="Records of consumer lag one processor pod is expected to clear."
    )
    activation_lag: int = Field(
        0,
        ge=0,
        description="KEDA only: lag above which the processor wakes from zero replicas.",
    )
    raise_partitions: bool = Field(
        False,
        description=(
            "Raise the topic's partitions to maxReplicas when it has fewer (Kafka cannot "
            "lower them again; keys move to other partitions once)."
        ),
    )
    fallback_replicas: int | None = Field(
        None,
        ge=1,
        description="KEDA only: pods to run while the lag cannot be read (3 failed polls).",
    )
    behavior: ProcessorBehavior = Field(default_factory=ProcessorBehavior)


LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99)
"""The quantiles the chart's metrics-adapter rules serve as metrics of their own."""


class LatencyTarget(CamelModel):
    quantile: float = Field(
        0.95,
        description="The quantile of recommendation_latency_seconds to hold down.",
        json_schema_extra={"enum": list(LATENCY_QUANTILES)},
    )
    threshold_seconds: float = Field(
        0.1,
        # An HPA compares metrics in milli-units: a smaller threshold would act as 1 ms.
        ge=0.001,
        le=60,
        description="Pods are added while that quantile is above this (at least 1 ms).",
    )

    @field_validator("quantile")
    @classmethod
    def _served(cls, value: float) -> float:
        if value not in LATENCY_QUANTILES:
            raise ValueError(f"must be one of {', '.join(map(str, LATENCY_QUANTILES))}")
        return value


class ApiAutoscaling(CamelModel):
    """The api by latency, and optionally by request rate (the larger replica count wins)."""

    model_config = ConfigDict(json_schema_extra=_BOUNDS)

    min_replicas: int = Field(2, ge=1, le=1000, description="Fewest pods.")
    max_replicas: int = Field(10, ge=1, le=1000, description="Most pods.")
    latency: LatencyTarget = Field(default_factory=LatencyTarget)
    requests_per_replica: float | None = Field(
        None, gt=0, description="Recommendation requests per second one api pod should serve."
    )
    behavior: ApiBehavior = Field(default_factory=ApiBehavior)


class AutoscalingSpec(CamelModel):
    """The processor by consumer lag, the api by latency: a role whose section is set is autoscaled and its replicas field applies no more."""  # noqa: E501

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.provider == 'KEDA' || !has(self.processor) "
                "|| self.processor.minReplicas >= 1",
                "spec.autoscaling.processor.minReplicas 0 (scale to zero) needs provider KEDA",
            ),
        )
    )

    enabled: bool = Field(
        True,
        description="false: no autoscaler, every role runs its replicas (the sections stay).",
    )
    provider: Literal["Auto", "KEDA", "HPA"] = Field(
        "Auto",
        description=(
            "KEDA ScaledObjects, or autoscaling/v2 HorizontalPodAutoscalers on the metrics "
            "adapter's metrics; Auto: KEDA when its CRDs are installed."
        ),
    )
    prometheus_address: str = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        min_length=1,
        description="KEDA only: the Prometheus that the api's latency and request rate come from.",
    )
    processor: ProcessorAutoscaling | None = Field(
        None, description="Set: the processor scales on consumer lag."
    )
    api: ApiAutoscaling | None = Field(None, description="Set: the api scales on latency.")

    def scaled_processor(self) -> ProcessorAutoscaling | None:
        return self.processor if self.enabled else None

    def of(self, role: str) -> ProcessorAutoscaling | ApiAutoscaling | None:
        """The autoscaling of ``role`` when it is autoscaled, else None."""
        if not self.enabled:
            return None
        section: ProcessorAutoscaling | ApiAutoscaling | None = getattr(self, role, None)
        return section


class ServiceMonitorSpec(CamelModel):
    enabled: bool | None = Field(
        None,
        description=(
            "A Prometheus Operator ServiceMonitor for the four roles; unset: when its CRD "
            "is installed."
        ),
    )
    interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels your Prometheus selects ServiceMonitors by."
    )


class MonitoringSpec(CamelModel):
    service_monitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec)


class NetworkPolicySpec(CamelModel):
    enabled: bool = Field(False, description="NetworkPolicies that admit only the roles' ports.")
    ingress_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "NetworkPolicyPeers allowed to reach ingest and the api; empty: any. The "
            "processor's and archiver's metrics ports admit the namespace only."
        ),
        json_schema_extra={"items": {"type": "object", **PRESERVE}},
    )


class AccessSpec(CamelModel):
    api_keys_secret_ref: SecretKeyRef | None = Field(
        None, description="Comma-separated write keys (POST /events, PUT /items)."
    )
    read_api_keys_secret_ref: SecretKeyRef | None = Field(
        None, description="Comma-separated read keys; unset: open reads."
    )
    rate_limit_per_second: float = Field(0.0, ge=0, description="Per client and pod; 0: off.")


class RecoEngineSpec(CamelModel):
    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.processor.replicas <= self.kafka.partitions",
                "spec.processor.replicas must be <= spec.kafka.partitions: a consumer group "
                "gives each partition to one member, so extra processors would sit idle",
            ),
        )
    )

    image: ImageSpec = Field(default_factory=ImageSpec)
    kafka: KafkaSpec
    redis: RedisSpec
    postgres: PostgresSpec
    ingest: IngestSpec = Field(default_factory=IngestSpec)
    processor: ProcessorSpec = Field(default_factory=ProcessorSpec)
    archiver: ArchiverSpec = Field(default_factory=ArchiverSpec)
    api: ApiSpec = Field(default_factory=ApiSpec)
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="Engine settings: weights, event weights, rules, caps (generated schema).",
    )
    training: TrainingSpec | None = Field(
        None, description="Set to run `reco train` on a schedule (a CronJob)."
    )
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    network_policy: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)
    access: AccessSpec = Field(default_factory=AccessSpec)
    experiments: list[Experiment] = Field(
        default_factory=list,
        description=(
            "Online A/B tests of /recommendations (docs/experiments.md): each takes its "
            "traffic share of the subjects (users, else sessions), disjoint from the others' "
            "(the shares add up to 1 at most), and splits it between its variants (2 or more, "
            "the first is control) by their weights. The api writes an impression record to "
            "the Kafka topic for each recommendation served in one, so with experiments the "
            "api pods connect to Kafka too. A change rolls the api and the processor."
        ),
    )

    def component(self, role: str) -> ComponentSpec:
        spec: ComponentSpec = getattr(self, role)
        return spec

    def engine_settings(self) -> EngineSettings:
        """The engine settings the spec gives (``spec.engine`` and ``spec.experiments``),
        validated by the engine's own model."""
        values: dict[str, Any] = {ENGINE_FIELDS[key]: value for key, value in self.engine.items()}
        values["experiments"] = self.experiments
        return EngineSettings.model_validate(values)


# -- the engine's settings under camelCase names ---------------------------------------------


def engine_key(field: str) -> str:
    """``popularity_half_life_s`` -> ``popularityHalfLifeSeconds``: camelCase, and the
    engine's ``_s`` suffix spelled out, as Kubernetes names durations (the engine's own
    camelCase spelling, ``reco.settings.camel_key``)."""
    return camel_key(field)


SPEC_SETTINGS: frozenset[str] = frozenset({"experiments"})
"""Engine settings set by a field of the spec's own (``spec.experiments``), not in
``spec.engine``."""

ENGINE_FIELDS: dict[str, str] = {
    engine_key(f): f for f in EngineSettings.model_fields if f not in SPEC_SETTINGS
}
"""camelCase key in ``spec.engine`` -> the engine's setting name."""


class InvalidSpec(ValueError):
    """A spec the API server accepted but the engine would refuse; the message says where."""


def parse_spec(spec: dict[str, Any]) -> RecoEngineSpec:
    """The typed spec, or ``InvalidSpec`` naming each field that is wrong."""
    try:
        parsed = RecoEngineSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidSpec(_describe(exc, "spec")) from None
    moved = sorted(engine_key(f) for f in SPEC_SETTINGS if engine_key(f) in parsed.engine)
    if moved:
        raise InvalidSpec("; ".join(f"spec.engine.{key}: set spec.{key} instead" for key in moved))
    unknown = sorted(set(parsed.engine) - set(ENGINE_FIELDS))
    if unknown:
        raise InvalidSpec(f"spec.engine: unknown settings {', '.join(unknown)}")
    try:
        parsed.engine_settings()
    except ValidationError as exc:
        # What the engine refuses across experiments (names that repeat, traffic above 1)
        # belongs to spec.experiments; the rest to spec.engine.
        raise InvalidSpec(
            _describe(exc, "spec.engine", rename=engine_key, top_level=SPEC_SETTINGS)
        ) from None
    return parsed


def _describe(
    exc: ValidationError,
    prefix: str,
    rename: Callable[[str], str] = str,
    top_level: frozenset[str] = frozenset(),
) -> str:
    """``spec.experiments[0].variants: List should have at least 2 items; ...``: each
    error at its field's path, list indexes in brackets as kubectl shows them."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        path = "spec" if loc and loc[0] in top_level else prefix
        for i, part in enumerate(loc):
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += "." + (rename(part) if i == 0 else part)
        parts.append(f"{path}: {error['msg']}")
    return "; ".join(parts)
