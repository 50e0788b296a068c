"""The RecoEngine's status: conditions and replica counts, computed from what the operator
saw (pure; the handlers write the result).

Three conditions, as Kubernetes' own controllers and Strimzi use them:

- ``Ready``: every role has all its replicas ready on the newest revision, and nothing
  blocks the operator.
- ``Progressing``: a rollout or a scale is under way (True), or it is done (False,
  ``Complete``), or the operator cannot go on (False, with the reason it waits).
- ``Degraded``: something needs a person (a missing Secret, an unreachable Kafka, a spec
  the engine refuses, a topic that cannot shrink), with a message saying what to do.

A condition's ``lastTransitionTime`` moves only when its status does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from reco_operator.spec import ROLES


@dataclass(frozen=True)
class Problem:
    """Why the operator cannot (``blocking``) or could only partly do what the spec asks."""

    reason: str
    message: str
    blocking: bool = True


@dataclass(frozen=True)
class Replicas:
    desired: int
    ready: int
    updated: int

    @property
    def done(self) -> bool:
        return self.ready >= self.desired and self.updated >= self.desired


def replicas_of(deployment: dict[str, Any] | None, wanted: int = 0) -> Replicas:
    """A Deployment's replica counts; a missing one has none ready of the ``wanted``."""
    if deployment is None:
        return Replicas(wanted, 0, 0)
    spec, status = deployment.get("spec", {}), deployment.get("status", {}) or {}
    desired = int(spec.get("replicas", 1))
    # A rollout is only done once the Deployment controller has seen the newest spec.
    seen = status.get("observedGeneration", 0) >= deployment.get("metadata", {}).get(
        "generation", 0
    )
    return Replicas(
        desired=desired,
        ready=int(status.get("readyReplicas", 0) or 0),
        updated=int(status.get("updatedReplicas", 0) or 0) if seen else 0,
    )


def running_image(deployments: dict[str, dict[str, Any]], replicas: dict[str, Replicas]) -> str:
    """The engine image every role runs once its rollout is done; "" while they differ or
    a rollout is under way (the status then keeps the image it showed)."""
    images = set()
    for role in ROLES:
        deployment = deployments.get(role)
        if deployment is None or not replicas[role].done:
            return ""
        containers = deployment["spec"]["template"]["spec"]["containers"]
        images.add(containers[0]["image"])
    return images.pop() if len(images) == 1 else ""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(
    previous: list[dict[str, Any]],
    *,
    generation: int,
    replicas: dict[str, Replicas],
    problems: list[Problem],
    at: str | None = None,
    extra: dict[str, tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Ready, Progressing and Degraded, then the ``extra`` ones: (status, reason, message)
    by type."""
    at = at or now()
    blocking = next((p for p in problems if p.blocking), None)
    waiting = [role for role in ROLES if not replicas.get(role, Replicas(0, 0, 0)).done]
    if blocking is not None:
        ready = ("False", blocking.reason, blocking.message)
        progressing = ("False", blocking.reason, f"waiting: {blocking.message}")
    elif waiting:
        counts = ", ".join(_count(role, replicas[role]) for role in waiting if role in replicas)
        ready = ("False", "ReplicasNotReady", f"not ready yet: {counts or ', '.join(waiting)}")
        progressing = ("True", "RollingOut", f"rolling out: {counts or ', '.join(waiting)}")
    else:
        ready = ("True", "AllReplicasReady", "every role has all its replicas ready")
        progressing = ("False", "Complete", "the spec is rolled out")
    if problems:
        worst = blocking or problems[0]
        degraded = ("True", worst.reason, "; ".join(p.message for p in problems))
    else:
        degraded = ("False", "AsExpected", "nothing needs attention")
    wanted = {"Ready": ready, "Progressing": progressing, "Degraded": degraded, **(extra or {})}
    before = {c.get("type"): c for c in previous}
    out = []
    for kind, (status, reason, message) in wanted.items():
        old = before.get(kind, {})
        moved = old.get("status") != status
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": at if moved else old.get("lastTransitionTime", at),
                "observedGeneration": generation,
            }
        )
    return out


def _count(role: str, r: Replicas) -> str:
    return f"{role} {r.ready}/{r.desired}"


def status(
    previous: dict[str, Any],
    *,
    generation: int,
    replicas: dict[str, Replicas],
    problems: list[Problem],
    image: str,
    topic: str,
    partitions: int | None,
    at: str | None = None,
    autoscaling: dict[str, Any] | None = None,
    extra: dict[str, tuple[str, str, str]] | None = None,
) -> dict[str, Any]:
    """The whole status subresource."""
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions(
            previous.get("conditions") or [],
            generation=generation,
            replicas=replicas,
            problems=problems,
            at=at,
            extra=extra,
        ),
        "components": {
            role: {"desired": r.desired, "ready": r.ready, "updated": r.updated}
            for role, r in replicas.items()
        },
        "replicas": {role: f"{r.ready}/{r.desired}" for role, r in replicas.items()},
        "image": image,
        "topic": {"name": topic},
    }
    if partitions is not None:
        out["topic"]["partitions"] = partitions
    if autoscaling or previous.get("autoscaling"):
        # The status is written as a merge patch: what is gone must be written as null.
        out["autoscaling"] = (
            _replacing(previous.get("autoscaling"), autoscaling) if autoscaling else None
        )
    return out


def _replacing(old: Any, new: dict[str, Any]) -> dict[str, Any]:
    """``new``, with null for each key of ``old`` it lacks (at every depth)."""
    out: dict[str, Any] = dict(new)
    if isinstance(old, dict):
        for key, value in old.items():
            if key not in new:
                out[key] = None
            elif isinstance(value, dict) and isinstance(new[key], dict):
                out[key] = _replacing(value, new[key])
    return out


# -- autoscaling ---------------------------------------------------------------------------------

_SUFFIXES = {
    "n": Decimal("0.000000001"),
    "u": Decimal("0.000001"),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
}


def quantity(text: str | int | float | None) -> float | None:
    """A Kubernetes quantity (``1500m``, ``2k``, ``12``) as a number; None when absent."""
    if text is None:
        return None
    raw = str(text)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if raw.endswith(suffix):
            return float(Decimal(raw[: -len(suffix)]) * _SUFFIXES[suffix])
    return float(Decimal(raw))


def _current(metric: dict[str, Any]) -> float | None:
    kind = metric.get("type", "")
    current = (metric.get(kind[:1].lower() + kind[1:]) or {}).get("current") or {}
    return quantity(current.get("value", current.get("averageValue")))


def _metric_name(metric: dict[str, Any]) -> str:
    kind = metric.get("type", "")
    source = metric.get(kind[:1].lower() + kind[1:]) or {}
    return str((source.get("metric") or {}).get("name", ""))


def scaling(role: str, hpa: dict[str, Any] | None) -> dict[str, Any]:
    """What the autoscaler of ``role`` did and saw, from the HorizontalPodAutoscaler that
    drives it (the operator's own, or the one KEDA made for its ScaledObject).

    The processor's ``lag`` is the group's (the average per replica the HPA saw, times its
    replicas); the api's ``latencySeconds`` is the quantile it holds down and
    ``requestsPerSecond`` the rate per pod. A metric the autoscaler could not read is
    left out, and ``message`` says why (from the HPA's ScalingActive condition)."""
    out: dict[str, Any] = {}
    if hpa is None:
        out["message"] = "waiting for the HorizontalPodAutoscaler"
        return out
    spec, st = hpa.get("spec") or {}, hpa.get("status") or {}
    out["minReplicas"] = int(spec.get("minReplicas", 1))
    out["maxReplicas"] = int(spec.get("maxReplicas", 1))
    if "currentReplicas" in st:
        out["currentReplicas"] = int(st["currentReplicas"])
    if "desiredReplicas" in st:
        out["desiredReplicas"] = int(st["desiredReplicas"])
    if st.get("lastScaleTime"):
        out["lastScaleTime"] = st["lastScaleTime"]
    for index, metric in enumerate(st.get("currentMetrics") or []):
        value = _current(metric)
        if value is None:
            continue
        kind, name = metric.get("type"), _metric_name(metric)
        if role == "processor" and kind == "External":
            out["lag"] = round(value * int(st.get("currentReplicas", 1) or 1))
        elif role == "api" and (kind == "Object" or "latency" in name or name.startswith("s0-")):
            out["latencySeconds"] = value
        elif role == "api" and (kind == "Pods" or index > 0):
            out["requestsPerSecond"] = value
    active = next((c for c in st.get("conditions") or [] if c.get("type") == "ScalingActive"), None)
    if active is not None and active.get("status") != "True":
        out["message"] = f"{active.get('reason')}: {active.get('message', '')}"[:512]
    return out


def scaled_events(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """A sentence per role whose desired replicas the autoscaler changed."""
    messages = []
    for role, now_ in current.items():
        if not isinstance(now_, dict):
            continue
        before = (previous.get(role) or {}).get("desiredReplicas")
        after = now_.get("desiredReplicas")
        if before is None or after is None or before == after:
            continue
        seen = [
            f"{label} {now_[key]}{unit}"
            for key, label, unit in (
                ("lag", "lag", " records"),
                ("latencySeconds", "latency", " s"),
                ("requestsPerSecond", "requests", "/s per pod"),
            )
            if key in now_
        ]
        why = f" ({', '.join(seen)})" if seen else ""
        messages.append(f"{role}: {before} -> {after} replicas{why}")
    return messages
