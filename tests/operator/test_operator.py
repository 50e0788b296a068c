"""The operator as a real process against a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok) and the suite's real Kafka broker.

kwok plays the kubelet: pods become Running and Ready without running anything, so these
tests see exactly what the control plane does with the operator's objects (ReplicaSets,
rollouts, garbage collection), not what the engine does in the pods."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # admin re-exports it, not for mypy

from tests.conftest import wait_until
from tests.operator.conftest import Engines, OperatorProcess

pytestmark = pytest.mark.operator

ROLES = ("ingest", "processor", "archiver", "api")


def _partitions(admin: AdminClient, topic: str) -> int:
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def _pods(engines: Engines, role: str) -> set[str]:
    out = engines.kubectl(
        "get", "pods", "-l", f"app.kubernetes.io/instance=shop,app.kubernetes.io/component={role}",
        "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}",
    )  # fmt: skip
    return set(out.split())


def _generation(engines: Engines, role: str) -> int:
    deployment = engines.get("deployment", f"shop-{role}")
    assert deployment is not None
    return int(deployment["metadata"]["generation"])


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_recoengine_becomes_a_running_engine(
    engines: Engines, operator: OperatorProcess, kafka_admin: AdminClient
) -> None:
    engines.create_secret()
    engines.apply(engines.manifest())
    engines.wait_ready()

    uid = engines.engine()["metadata"]["uid"]
    assert engines.names("deployments") == {f"shop-{r}" for r in ROLES}
    assert engines.names("services") == {f"shop-{r}" for r in ROLES}
    assert engines.names("poddisruptionbudgets") == {f"shop-{r}" for r in ROLES}
    assert engines.names("configmaps") == {"shop-engine"}
    for kind, name in [("deployment", "shop-api"), ("configmap", "shop-engine")]:
        child = engines.get(kind, name)
        assert child is not None
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"]) == (uid, True)
    api = engines.get("deployment", "shop-api")
    assert api is not None
    assert api["spec"]["replicas"] == 2
    assert api["status"]["readyReplicas"] == 2
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/reco-engine/reco-engine:0.1.0"
    assert container["args"] == ["api"]

    status = engines.engine()["status"]
    assert status["replicas"] == {
        "ingest": "2/2",
        "processor": "2/2",
        "api": "2/2",
        "archiver": "1/1",
    }
    assert status["components"]["processor"] == {"desired": 2, "ready": 2, "updated": 2}
    assert status["topic"] == {"name": engines.topic, "partitions": 4}
    assert _partitions(kafka_admin, engines.topic) == 4, "the topic exists on the broker"
    table = engines.kubectl("get", "reco", "shop")
    assert table.split("\n")[1].split()[:6] == ["shop", "True", "2/2", "2/2", "2/2", "1/1"]
    reasons = {e["reason"] for e in engines.events()}
    assert {"TopicCreated", "Applied"} <= reasons


def test_a_spec_change_rolls_only_the_pods_it_concerns(
    engines: Engines, operator: OperatorProcess
) -> None:
    engines.create_secret()
    engines.apply(engines.manifest())
    engines.wait_ready()
    before = {role: _pods(engines, role) for role in ROLES}
    generations = {role: _generation(engines, role) for role in ROLES}

    engines.apply(engines.manifest(engine={"weights": {"coview": 2.5}}))  # scoring: api only
    wait_until(
        lambda: _pods(engines, "api") and not _pods(engines, "api") & before["api"],
        timeout_s=90,
        every_s=0.5,
    )
    engines.wait_ready()
    for role in ("ingest", "processor", "archiver"):
        assert _pods(engines, role) == before[role], f"{role} pods were rolled"
        assert _generation(engines, role) == generations[role]
    config = engines.get("configmap", "shop-engine")
    assert config is not None
    assert json.loads(config["data"]["RECO_WEIGHTS"])["coview"] == 2.5

    engines.apply(engines.manifest(api={"replicas": 3}))  # replicas: no new pods elsewhere
    wait_until(lambda: engines.engine()["status"]["replicas"]["api"] == "3/3", 60, 0.5)


def test_children_deleted_or_edited_by_hand_come_back(
    engines: Engines, operator: OperatorProcess
) -> None:
    """A deleted child comes back at once; a field the operator sets and someone changed
    is set back by the repair timer (server-side apply takes it over again). Fields the
    operator never sets, another manager may keep."""
    engines.create_secret()
    engines.apply(engines.manifest())
    engines.wait_ready()
    old = engines.get("deployment", "shop-api")
    assert old is not None

    engines.kubectl("delete", "deployment", "shop-api", "--wait=false")
    engines.kubectl("delete", "configmap", "shop-engine")
    engines.kubectl("scale", "deployment", "shop-processor", "--replicas=5")
    engines.kubectl("set", "image", "deployment/shop-ingest", "ingest=example.org/other:1")
    engines.kubectl("set", "env", "deployment/shop-archiver", "RECO_GROUP=someone-elses")

    def repaired() -> bool:
        api = engines.get("deployment", "shop-api")
        processor = engines.get("deployment", "shop-processor")
        ingest = engines.get("deployment", "shop-ingest")
        archiver = engines.get("deployment", "shop-archiver")
        return bool(
            api is not None
            and api["metadata"]["uid"] != old["metadata"]["uid"]
            and engines.get("configmap", "shop-engine") is not None
            and processor is not None
            and processor["spec"]["replicas"] == 2
            and ingest is not None
            and ingest["spec"]["template"]["spec"]["containers"][0]["image"].startswith("ghcr.io/")
            and archiver is not None
            and _env(archiver)["RECO_GROUP"] == "reco-archiver"
        )

    wait_until(repaired, timeout_s=60, every_s=0.5)
    engines.wait_ready()


def test_children_go_when_the_spec_or_the_recoengine_does(
    engines: Engines, operator: OperatorProcess
) -> None:
    engines.create_secret()
    tune = {"protocol": "user", "budgetSeconds": 600, "activeDeadlineSeconds": 900}
    ranker = {"sinceDays": 14, "candidates": 100}
    training = {"schedule": "0 4 * * *", "tune": tune, "ranker": ranker}
    engines.apply(engines.manifest(training=training))
    engines.wait_ready()
    assert engines.names("cronjobs") == {"shop-train", "shop-tune", "shop-rank"}
    cron = engines.get("cronjob", "shop-tune")
    assert cron is not None
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["tune", "--protocol", "user"]
    cron = engines.get("cronjob", "shop-rank")
    assert cron is not None
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["train", "--ranker", "--since-days", "14.0"]
    assert {"name": "RECO_RANKER_CANDIDATES", "value": "100"} in container["env"]

    training = {"schedule": "0 4 * * *", "tune": tune}  # the ranker off
    engines.apply(engines.manifest(training=training))
    wait_until(lambda: engines.names("cronjobs") == {"shop-train", "shop-tune"}, 60, 0.5)
    engines.apply(engines.manifest(training={"schedule": "0 4 * * *"}))  # tune off
    wait_until(lambda: engines.names("cronjobs") == {"shop-train"}, 60, 0.5)
    engines.apply(engines.manifest())  # training off: the CronJob goes, nothing else
    wait_until(lambda: not engines.names("cronjobs"), 60, 0.5)
    wait_until(lambda: "Deleted" in {e["reason"] for e in engines.events()}, 30, 0.5)
    assert engines.names("deployments") == {f"shop-{r}" for r in ROLES}

    # No finalizer: deleting a RecoEngine never waits for the operator (nor does its
    # namespace); garbage collection removes the children.
    assert not engines.engine()["metadata"].get("finalizers")
    engines.kubectl("delete", "recoengine", "shop", "--wait=true", "--timeout=60s")
    everything = ("deployments", "services", "configmaps", "poddisruptionbudgets", "cronjobs")
    wait_until(lambda: not any(engines.names(kind) for kind in everything), 90, 0.5)


_AB = {"name": "ab", "variants": [{"name": "a"}, {"name": "b"}]}


def test_a_spec_that_can_never_work_is_refused_with_the_rule_s_message(engines: Engines) -> None:
    refusals = {
        "spec.ingest.replicas": engines.manifest(ingest={"replicas": -1}),
        "spec.engine.weights.coview": engines.manifest(engine={"weights": {"coview": -0.5}}),
        "extra processors would sit idle": engines.manifest(processor={"replicas": 9}),
        "needs spec.kafka.sasl": engines.manifest(kafka={"securityProtocol": "SASL_PLAINTEXT"}),
        "event types are lower-case names": engines.manifest(
            engine={"eventWeights": {"Add To Cart": 5}}
        ),
        "minReplicas must be <= maxReplicas": engines.manifest(
            autoscaling={"api": {"minReplicas": 5, "maxReplicas": 2}}
        ),
        "the Job would be killed before the search ends": engines.manifest(
            training={"tune": {"budgetSeconds": 3600}}  # the deadline's default: 3600
        ),
        "spec.experiments[0].variants: Invalid value": engines.manifest(
            experiments=[{"name": "ab", "variants": [{"name": "a"}]}]  # one variant
        ),
        "spec.experiments[0].variants[1]: Duplicate value": engines.manifest(
            experiments=[{"name": "ab", "variants": [{"name": "a"}, {"name": "a"}]}]
        ),
        "spec.experiments[1]: Duplicate value": engines.manifest(experiments=[_AB, _AB]),
        "the experiments' traffic adds up to more than 1": engines.manifest(
            experiments=[{**_AB, "traffic": 0.6}, {**_AB, "name": "cd", "traffic": 0.5}]
        ),
    }
    for message, body in refusals.items():
        assert message in engines.apply_refused(body)
    assert engines.get("recoengine", "shop") is None

    # Shares that add up to 1 in floats (0.1 + 0.2 + 0.7 > 1) and an integer share pass.
    shares = [{**_AB, "name": n, "traffic": t} for n, t in (("a", 0.1), ("b", 0.2), ("c", 0.7))]
    engines.apply(engines.manifest(experiments=shares))
    engines.apply(engines.manifest(experiments=[{**_AB, "traffic": 1}]))
    (experiment,) = engines.engine()["spec"]["experiments"]
    assert experiment["attributionWindowSeconds"] == 1800, "the engine's default, filled in"
    assert experiment["variants"][0] == {"name": "a", "weight": 1, "ranker": False, "settings": {}}
    engines.apply(engines.manifest())
    shrink = engines.apply_refused(engines.manifest(kafka={"partitions": 2}))
    assert "Kafka cannot take partitions away from a topic" in shrink


def test_a_missing_secret_or_an_unreachable_kafka_creates_nothing_and_says_why(
    engines: Engines, operator: OperatorProcess
) -> None:
    engines.apply(engines.manifest())  # the Secret does not exist yet
    wait_until(lambda: engines.condition("Degraded").get("reason") == "SecretMissing", 60, 0.5)
    degraded = engines.condition("Degraded")
    assert "reco-backends/redis-url" in degraded["message"]
    assert engines.condition("Ready")["status"] == "False"
    wait_until(lambda: "SecretMissing" in {e["reason"] for e in engines.events()}, 30)
    assert not engines.names("deployments"), "nothing half-made"
    assert not engines.names("configmaps")
    # kubectl get reco tells the truth: none of the pods asked for is ready.
    assert engines.engine()["status"]["replicas"] == {
        "ingest": "0/2", "processor": "0/2", "api": "0/2", "archiver": "0/1"
    }  # fmt: skip

    offline = engines.manifest(name="offline", kafka={"bootstrapServers": "127.0.0.1:1"})
    engines.apply(offline)
    engines.create_secret()
    engines.wait_ready()  # the first one, now that its Secret exists
    wait_until(
        lambda: engines.condition("Degraded", "offline").get("reason") == "KafkaUnreachable",
        90,
        0.5,
    )
    # Events are posted in the background, a moment after the condition.
    wait_until(lambda: "KafkaUnreachable" in {e["reason"] for e in engines.events("offline")}, 30)
    assert not {n for n in engines.names("deployments") if n.startswith("offline-")}


def test_partitions_are_raised_on_the_broker_and_never_lowered(
    engines: Engines, operator: OperatorProcess, kafka_admin: AdminClient
) -> None:
    engines.create_secret()
    engines.apply(engines.manifest())
    engines.wait_ready()
    assert _partitions(kafka_admin, engines.topic) == 4

    engines.apply(engines.manifest(kafka={"partitions": 6}))
    wait_until(lambda: _partitions(kafka_admin, engines.topic) == 6, 60, 0.5)
    engines.wait_ready()
    assert engines.engine()["status"]["topic"]["partitions"] == 6
    processor = engines.get("deployment", "shop-processor")
    assert processor is not None
    assert _env(processor)["RECO_TOPIC_PARTITIONS"] == "6"
    assert "TopicPartitionsRaised" in {e["reason"] for e in engines.events()}

    # A topic that already has more partitions than a new spec asks for keeps them.
    bigger = f"{engines.topic}-big"
    kafka_admin.create_topics([NewTopic(bigger, 8, 1)])[bigger].result(30)
    engines.apply(engines.manifest(name="big", kafka={"topic": bigger, "partitions": 4}))
    engines.wait_ready("big")
    degraded = engines.condition("Degraded", "big")
    assert (degraded["status"], degraded["reason"]) == ("True", "PartitionsNotReduced")
    assert "set it to 8 or more" in degraded["message"]
    assert _partitions(kafka_admin, bigger) == 8
    big = engines.get("deployment", "big-processor")
    assert big is not None
    assert _env(big)["RECO_TOPIC_PARTITIONS"] == "8"


def test_an_operator_killed_mid_reconcile_converges_when_it_comes_back(
    engines: Engines, operator_factory: Callable[..., OperatorProcess]
) -> None:
    engines.create_secret()
    first = operator_factory()
    engines.apply(engines.manifest(training={"schedule": "0 4 * * *"}))
    # Kill it as soon as it has written part of the children.
    wait_until(lambda: engines.names("services") or engines.names("configmaps"), 60, 0.05)
    first.kill()
    assert not engines.ready()

    operator_factory()  # takes the Lease once the killed one's expires
    engines.wait_ready(timeout_s=120)
    assert engines.names("deployments") == {f"shop-{r}" for r in ROLES}
    assert engines.names("cronjobs") == {"shop-train"}


def test_two_operators_elect_one_leader_and_the_other_takes_over(
    engines: Engines, operator_factory: Callable[..., OperatorProcess]
) -> None:
    first, second = operator_factory(), operator_factory()
    engines.create_secret()
    engines.apply(engines.manifest())
    engines.wait_ready()

    def holder() -> str:
        return engines.kubectl(
            "get", "lease", "reco-operator", "-o", "jsonpath={.spec.holderIdentity}"
        )

    leader = holder()
    assert leader
    logs = {first: first.tail(200), second: second.tail(200)}
    leading = [p for p, log in logs.items() if "leads (Lease" in log]
    assert len(leading) == 1, "exactly one leads"
    leading[0].kill()

    wait_until(lambda: holder() not in ("", leader), timeout_s=60, every_s=0.5)
    engines.apply(engines.manifest(api={"replicas": 1}))
    wait_until(lambda: engines.engine()["status"]["replicas"]["api"] == "1/1", 60, 0.5)


def test_in_single_namespace_mode_other_namespaces_are_left_alone(
    engines: Engines, operator_factory: Callable[..., OperatorProcess]
) -> None:
    engines.create_secret()
    operator_factory("--namespace", "somewhere-else")
    engines.apply(engines.manifest())
    with pytest.raises(AssertionError):
        wait_until(lambda: engines.engine().get("status"), timeout_s=8, every_s=0.5)
    assert not engines.names("deployments")


SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def test_the_status_shows_the_image_running_and_a_service_monitor_follows_its_crd(
    engines: Engines, operator: OperatorProcess
) -> None:
    """The ServiceMonitor CRD here is a stand-in with an open schema (the Prometheus
    Operator's own is not in the suite): what is checked is that the operator creates one
    when the kind exists, selecting the engine's Services on their metrics port."""
    engines.plane.kubectl("apply", "-f", "-", input_text=json.dumps(SERVICE_MONITOR_CRD))
    engines.plane.wait_established("servicemonitors.monitoring.coreos.com")
    engines.create_secret()
    engines.apply(engines.manifest())
    engines.wait_ready()
    assert engines.engine()["status"]["image"] == "ghcr.io/reco-engine/reco-engine:0.1.0"
    monitor = engines.get("servicemonitor", "shop")
    assert monitor is not None
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "shop"

    engines.apply(engines.manifest(image={"tag": "0.2.0"}))
    wait_until(
        lambda: engines.engine()["status"].get("image") == "ghcr.io/reco-engine/reco-engine:0.2.0",
        timeout_s=90,
        every_s=0.5,
    )
    engines.wait_ready()
