"""kopf handlers: thin, each one hands the RecoEngine to :func:`reconcile`.

One reconcile does everything, in an order that never leaves a half-made engine: read the
spec (refused: nothing is touched), the Secrets it references (one missing: nothing is
created until it exists), the topic (Kafka unreachable before the first rollout: nothing
is created either), then apply every child with server-side apply, delete the children the
spec no longer asks for, and write the status. It runs on create, on every spec change,
when the operator starts (resume), on a timer (drift repair: a child edited or deleted by
hand comes back), and at once when a child is deleted.

Errors follow kopf's contract: ``TemporaryError`` (retried after a delay) while something
outside the spec is missing or unreachable, ``PermanentError`` for a spec that can never
work (kopf retries it only once the spec changes). Each one is also a condition and a
Kubernetes Event saying what to do.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

import kopf

from reco_operator import FIELD_MANAGER, GROUP, PLURAL, VERSION
from reco_operator.autoscaling import (
    AUTOSCALED,
    KEDA_CRD,
    autoscalers,
    capped,
    hpa_name,
    provider,
    wanted_partitions,
)
from reco_operator.builders import Engine, all_secret_refs, children, missing_secrets
from reco_operator.kube import Cluster
from reco_operator.spec import ROLES, InvalidSpec, RecoEngineSpec, parse_spec
from reco_operator.status import (
    Problem,
    Replicas,
    replicas_of,
    running_image,
    scaled_events,
    scaling,
    status,
)
from reco_operator.topics import KafkaUnreachable, TopicRefused, TopicState, ensure_topic

log = logging.getLogger(__name__)

SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
OWNED = {"app.kubernetes.io/managed-by": FIELD_MANAGER}


class Operator:
    """State the handlers share: the API client, the repair interval, one lock per engine
    (the repair loop and a handler must not reconcile one engine at once), and the problems
    and partitions of each engine's last reconcile (a child's status change rewrites the
    status with them)."""

    def __init__(
        self,
        cluster: Cluster | None = None,
        *,
        repair_interval_s: float = 60.0,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.cluster = cluster or Cluster()
        self.repair_interval_s = repair_interval_s
        self.namespaces = namespaces
        self.stopping = threading.Event()
        self.locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self.problems: dict[str, list[Problem]] = {}
        self.partitions: dict[str, int | None] = {}
        self.providers: dict[str, str] = {}
        """The autoscaling provider of each engine's last reconcile (absent: none)."""
        self.caps: dict[str, str | None] = {}
        """Why the processor's maxReplicas was capped at the last reconcile, or None."""


OPERATOR = Operator()


def configure(operator: Operator) -> None:
    global OPERATOR
    OPERATOR = operator


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's bookkeeping under our own API group, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.reporting_component = FIELD_MANAGER
    # One leader is elected with a Lease (see __main__); kopf's own peering stays off.
    settings.peering.standalone = True
    settings.watching.server_timeout = 270
    settings.execution.max_workers = 8
    # Drift repair runs on a thread of its own rather than as a kopf timer: a timer makes
    # kopf put a finalizer on every RecoEngine, and a finalizer would block deleting one
    # (and its namespace) whenever the operator is not running. Nothing needs one: the
    # children go by garbage collection, and the topic stays (it holds the events).
    threading.Thread(target=_repair_loop, args=(OPERATOR,), name="repair", daemon=True).start()


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    OPERATOR.stopping.set()


def _repair_loop(op: Operator) -> None:
    """Reconcile every RecoEngine again each interval: a child edited by hand is set back."""
    while not op.stopping.wait(op.repair_interval_s):
        try:
            engines = op.cluster.engines(op.namespaces)
        except Exception as exc:  # the API server is away: try again next interval
            log.warning("drift repair: cannot list RecoEngines: %s", exc)
            continue
        for body in engines:
            if op.stopping.is_set() or body["metadata"].get("deletionTimestamp"):
                continue
            try:
                reconcile(op, body)
            except (kopf.TemporaryError, kopf.PermanentError) as exc:
                log.info("drift repair of %s: %s", body["metadata"]["name"], exc)
            except Exception:
                log.exception("drift repair of %s failed", body["metadata"]["name"])


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_spec(body: kopf.Body, **_: Any) -> None:
    reconcile(OPERATOR, dict(body))


@kopf.on.event(group="apps", version="v1", plural="deployments", labels=OWNED)
def deployment_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """A Deployment's status moved: the RecoEngine's replicas and conditions follow at
    once. One deleted by hand comes back at once."""
    _child_event(event, body)


@kopf.on.event(group="", version="v1", plural="services", labels=OWNED)
@kopf.on.event(group="", version="v1", plural="configmaps", labels=OWNED)
@kopf.on.event(group="policy", version="v1", plural="poddisruptionbudgets", labels=OWNED)
@kopf.on.event(group="batch", version="v1", plural="cronjobs", labels=OWNED)
def other_child_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if event.get("type") == "DELETED":
        _child_event(event, body)


@kopf.on.event(group="autoscaling", version="v2", plural="horizontalpodautoscalers", labels=OWNED)
def autoscaler_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """An autoscaler's status moved (the operator's HPA, or the one KEDA made for a
    ScaledObject, which carries its labels): the RecoEngine's status follows. A deleted
    HPA of the operator's own comes back like any child."""
    if event.get("type") == "DELETED":
        _child_event(event, body)
        return
    instance = (body.metadata.labels or {}).get("app.kubernetes.io/instance")
    namespace = body.metadata.namespace or ""
    engine = OPERATOR.cluster.engine(namespace, instance) if instance else None
    if engine is not None and not engine["metadata"].get("deletionTimestamp"):
        refresh_status(OPERATOR, namespace, engine["metadata"]["name"], engine["metadata"]["uid"])


def _child_event(event: kopf.RawEvent, body: kopf.Body) -> None:
    owner = next(
        (o for o in body.metadata.get("ownerReferences", []) if o.get("kind") == "RecoEngine"),
        None,
    )
    if owner is None:
        return
    namespace = body.metadata.namespace or ""
    engine = OPERATOR.cluster.engine(namespace, owner["name"])
    if engine is None or engine["metadata"].get("uid") != owner.get("uid"):
        return  # the owner is gone (garbage collection is deleting this child)
    if engine["metadata"].get("deletionTimestamp"):
        return
    if event.get("type") == "DELETED":
        log.info("%s %s/%s deleted: recreating it", body.get("kind"), namespace, body.metadata.name)
        try:
            reconcile(OPERATOR, engine)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            log.info("recreating children of %s/%s: %s", namespace, owner["name"], exc)
    else:
        refresh_status(OPERATOR, namespace, owner["name"], owner["uid"])


@kopf.on.probe(id="engines")
def probe_engines(**_: Any) -> int:
    return len(OPERATOR.problems)


# -- the work ------------------------------------------------------------------------------------


def reconcile(op: Operator, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    with op.locks[meta["uid"]]:
        # Another reconcile may have finished while this one waited: work on what is
        # stored now, not on the body this one was called with.
        body = op.cluster.engine(meta["namespace"], meta["name"]) or body
        if body["metadata"].get("uid") == meta["uid"]:
            _reconcile(op, body)


def _reconcile(op: Operator, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    try:
        spec = parse_spec(body.get("spec") or {})
    except InvalidSpec as exc:
        _stop(op, body, None, Problem("InvalidSpec", f"{exc}; fix the spec"), permanent=True)
        return
    names = {ref.name for ref in all_secret_refs(spec)}
    secrets = op.cluster.secrets(namespace, names)
    missing = missing_secrets(spec, secrets)
    if missing:
        message = (
            f"Secret keys not found in namespace {namespace}: {', '.join(missing)}; create "
            "them (nothing is deployed until they exist)"
        )
        _stop(op, body, spec, Problem("SecretMissing", message), delay=15)
        return

    problems: list[Problem] = []
    known = ((body.get("status") or {}).get("topic") or {}).get("partitions")
    scaled_processor = spec.autoscaling.scaled_processor()
    kafka = spec.kafka.model_copy(
        update={"partitions": wanted_partitions(spec.kafka.partitions, scaled_processor)}
    )
    try:
        topic = ensure_topic(kafka, secrets)
    except KafkaUnreachable as exc:
        problem = Problem("KafkaUnreachable", f"{exc}; check spec.kafka and the brokers")
        if known is None:  # never rolled out: the roles would only crash-loop
            _stop(op, body, spec, problem, delay=30)
            return
        problems.append(Problem(problem.reason, problem.message, blocking=False))
        topic = TopicState(spec.kafka.topic, int(known))
    except TopicRefused as exc:
        _stop(op, body, spec, Problem("TopicRefused", f"{exc}; change spec.kafka"), delay=60)
        return
    if scaled_processor is not None and scaled_processor.raise_partitions:
        # Partitions the operator raised for a larger maxReplicas stay when it shrinks.
        topic = TopicState(topic.name, topic.partitions, topic.created, topic.raised_from)
    _topic_events(op, body, topic, known, problems)

    autoscaled = any(spec.autoscaling.of(role) is not None for role in AUTOSCALED)
    keda = autoscaled and spec.autoscaling.provider != "HPA" and op.cluster.crd_installed(KEDA_CRD)
    if autoscaled and spec.autoscaling.provider == "KEDA" and not keda:
        message = (
            f"spec.autoscaling.provider is KEDA and KEDA's CRD {KEDA_CRD} is not installed; "
            "install KEDA (docs/autoscaling.md) or set provider HPA or Auto"
        )
        _stop(op, body, spec, Problem("KedaNotInstalled", message), delay=30)
        return
    engine = Engine(
        name=name,
        namespace=namespace,
        uid=uid,
        spec=spec,
        partitions=topic.partitions,
        secrets=secrets,
        service_monitor_crd=op.cluster.crd_installed(SERVICE_MONITOR_CRD),
        keda_crd=keda,
    )
    cap = capped(engine)
    if cap is not None and op.caps.get(uid) != cap and not _capped(body):
        _event(op, "warn", body, reason="AutoscalingCapped", message=cap)
    _apply_children(op, body, engine)
    op.problems[uid] = problems
    op.partitions[uid] = topic.partitions
    op.caps[uid] = cap
    if autoscaled:
        op.providers[uid] = provider(engine)
    else:
        op.providers.pop(uid, None)
    _write_status(op, body, spec, problems, topic.partitions)


def _capped(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "AutoscalingCapped" and c.get("status") == "True" for c in conditions
    )


def _topic_events(
    op: Operator,
    body: dict[str, Any],
    topic: TopicState,
    known: int | None,
    problems: list[Problem],
) -> None:
    if topic.created:
        message = f"created topic {topic.name} with {topic.partitions} partitions"
        _event(op, "info", body, reason="TopicCreated", message=message)
    if topic.raised_from is not None:
        message = f"raised topic {topic.name} from {topic.raised_from} to {topic.partitions}"
        _event(op, "info", body, reason="TopicPartitionsRaised", message=f"{message} partitions")
    if topic.wanted is not None:
        message = (
            f"topic {topic.name} has {topic.partitions} partitions and Kafka cannot take "
            f"partitions away: spec.kafka.partitions {topic.wanted} is not applied (the "
            f"roles use {topic.partitions}); set it to {topic.partitions} or more"
        )
        problems.append(Problem("PartitionsNotReduced", message, blocking=False))
        if known != topic.partitions or not _has_condition(body, "PartitionsNotReduced"):
            _event(op, "warn", body, reason="PartitionsNotReduced", message=message)


def _apply_children(op: Operator, body: dict[str, Any], engine: Engine) -> None:
    """Delete what the spec no longer asks for first (an autoscaler being replaced or
    switched off is gone before a Deployment gets its replicas back or another autoscaler
    starts: never two for one Deployment), then apply the rest."""
    wanted = children(engine) + autoscalers(engine)
    keep = {(m["kind"], m["metadata"]["name"]) for m in wanted}
    for child in op.cluster.owned(engine.namespace, engine.name, engine.uid):
        if (child.kind, child.name) not in keep:
            op.cluster.delete(engine.namespace, child)
            why = "the spec no longer asks for it"
            message = f"deleted {child.kind} {child.name}: {why}"
            log.info("%s/%s: %s", engine.namespace, engine.name, message)
            _event(op, "info", body, reason="Deleted", message=message)
    for manifest in wanted:
        autoscaled = manifest["kind"] == "Deployment" and "replicas" not in manifest["spec"]
        if autoscaled and op.cluster.release_replicas(manifest):
            name = manifest["metadata"]["name"]
            log.info(
                "%s/%s: replicas of %s handed to the autoscaler",
                engine.namespace,
                engine.name,
                name,
            )
        applied = op.cluster.apply(manifest)
        if applied.changed:
            verb = "created" if applied.created else "updated"
            message = f"{verb} {applied.kind} {applied.name}"
            log.info("%s/%s: %s", engine.namespace, engine.name, message)
            _event(op, "info", body, reason="Applied", message=message)


def _stop(
    op: Operator,
    body: dict[str, Any],
    spec: RecoEngineSpec | None,
    problem: Problem,
    *,
    delay: float = 30,
    permanent: bool = False,
) -> None:
    """Report why nothing more is done now, then tell kopf whether to retry."""
    uid = body["metadata"]["uid"]
    already = _has_condition(body, problem.reason)
    op.problems[uid] = [problem]
    op.partitions.setdefault(uid, None)
    _write_status(op, body, spec, [problem], None)
    if not already:
        _event(op, "warn", body, reason=problem.reason, message=problem.message)
    if permanent:
        raise kopf.PermanentError(problem.message)
    raise kopf.TemporaryError(problem.message, delay=delay)


def _event(op: Operator, level: str, body: dict[str, Any], *, reason: str, message: str) -> None:
    """A Kubernetes Event on the RecoEngine."""
    op.cluster.post_event(body, "Warning" if level == "warn" else "Normal", reason, message)


def _has_condition(body: dict[str, Any], reason: str) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Degraded" and c.get("reason") == reason for c in conditions)


def refresh_status(op: Operator, namespace: str, name: str, uid: str) -> None:
    """Rewrite the status from the Deployments as they are now (no child touched), with
    the problems and partitions of the last reconcile."""
    if uid not in op.problems:
        return  # not reconciled by this operator yet: the reconcile writes the status
    with op.locks[uid]:
        body = op.cluster.engine(namespace, name)
        if body is None or body["metadata"].get("uid") != uid:
            return
        try:
            spec = parse_spec(body.get("spec") or {})
        except InvalidSpec:
            return
        _write_status(op, body, spec, op.problems[uid], op.partitions.get(uid))


def _write_status(
    op: Operator,
    body: dict[str, Any],
    spec: RecoEngineSpec | None,
    problems: list[Problem],
    partitions: int | None,
) -> None:
    meta = body["metadata"]
    deployments = op.cluster.deployments(meta["namespace"], meta["name"])
    replicas: dict[str, Replicas] = {
        role: replicas_of(deployments.get(role), spec.component(role).replicas if spec else 0)
        for role in ROLES
    }
    previous = body.get("status") or {}
    if partitions is None:
        partitions = (previous.get("topic") or {}).get("partitions")
    autoscaling = _autoscaling_status(op, body, spec)
    cap = op.caps.get(meta["uid"])
    extra = {}
    if autoscaling.get("processor") is not None:
        extra["AutoscalingCapped"] = (
            ("True", "TopicPartitions", cap)
            if cap
            else ("False", "WithinPartitions", "maxReplicas is within the topic's partitions")
        )
    new = status(
        previous,
        generation=int(meta.get("generation", 0)),
        replicas=replicas,
        problems=problems,
        image=running_image(deployments, replicas) or previous.get("image", ""),
        topic=spec.kafka.topic if spec else (previous.get("topic") or {}).get("name", ""),
        partitions=partitions,
        autoscaling=autoscaling,
        extra=extra,
    )
    op.cluster.write_status(meta["namespace"], meta["name"], new)
    for message in scaled_events(previous.get("autoscaling") or {}, autoscaling):
        _event(op, "info", body, reason="Autoscaled", message=message)


def _autoscaling_status(
    op: Operator, body: dict[str, Any], spec: RecoEngineSpec | None
) -> dict[str, Any]:
    """The autoscalers' view per autoscaled role, from the HPA that drives each (the
    operator's, or KEDA's for a ScaledObject); empty when none is autoscaled."""
    meta = body["metadata"]
    chosen = op.providers.get(meta["uid"])
    if spec is None or chosen is None:
        return {}
    hpas = op.cluster.autoscalers(meta["namespace"], meta["name"])
    out: dict[str, Any] = {"provider": chosen}
    for role in AUTOSCALED:
        if spec.autoscaling.of(role) is None:
            continue
        out[role] = scaling(role, hpas.get(hpa_name(meta["name"], role, chosen)))
    return out
