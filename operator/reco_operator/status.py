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
) -> list[dict[str, Any]]:
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
    wanted = {"Ready": ready, "Progressing": progressing, "Degraded": degraded}
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
    return out
