"""The chart against the suite's real control plane: every ci/ scenario accepted by the API
server (schemas, the CRD's CEL rules, Pod Security), then real installs.

kwok plays the kubelet: pods are scheduled and become Running and Ready, but no container
runs. So an install proves what the API server, the controllers and the scheduler decide
(admission under the restricted Pod Security Standard, RBAC, the operator's rights as
`kubectl auth can-i` sees them), not what the images do. `helm test` cannot pass here: its
pod becomes Running and stays so (kwok completes only pods that a Job owns), so the test
below shows exactly that, and test_helm_test_script.py runs the same script against a real
engine process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reco.local.servers import KafkaServer, free_port
from tests.chart.conftest import CHART, CI_FILES, CI_IDS, documents, kubectl, restrict
from tests.conftest import wait_until
from tests.support.kube import ControlPlane

pytestmark = [pytest.mark.chart, pytest.mark.usefixtures("crd_established")]

LAPTOP = CHART / "ci" / "laptop-values.yaml"


def release_for(namespace: str) -> str:
    """A short release name of the test's own (the namespace's random suffix): the chart's
    names stay far from the 63-character limit, and cluster-scoped ones (the ClusterRole)
    never meet another test's."""
    return f"r{namespace[-8:]}"


def can_i(plane: ControlPlane, service_account: str, *query: str) -> bool:
    done = kubectl(plane, "auth", "can-i", *query, f"--as={service_account}")
    return done.stdout.strip() == "yes"


@pytest.mark.parametrize("values", CI_FILES, ids=CI_IDS)
def test_every_ci_render_is_accepted_by_the_api_server(
    control_plane: ControlPlane,
    k8s_namespace: str,
    single_namespace_targets: tuple[str, ...],
    values: Path,
) -> None:
    restrict(control_plane, k8s_namespace)
    rendered = control_plane.helm(
        "template",
        release_for(k8s_namespace),
        str(CHART),
        "--namespace",
        k8s_namespace,
        "-f",
        str(values),
    )
    done = kubectl(control_plane, "apply", "--dry-run=server", "-f", "-", input_text=rendered)
    assert done.returncode == 0, done.stderr
    assert "would violate PodSecurity" not in done.stderr, done.stderr
    applied = [line for line in done.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(documents(rendered)), done.stdout


def test_a_recoengine_the_crd_refuses_fails_the_install(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    """The chart passes recoEngine.spec through; the CRD's CEL rule catches a bad one."""
    rendered = control_plane.helm(
        "template",
        release_for(k8s_namespace),
        str(CHART),
        "--namespace",
        k8s_namespace,
        "-f",
        str(LAPTOP),
        "--set",
        "recoEngine.spec.processor.replicas=5",
    )
    done = kubectl(control_plane, "apply", "--dry-run=server", "-f", "-", input_text=rendered)
    assert done.returncode != 0
    assert "spec.processor.replicas must be <= spec.kafka.partitions" in done.stderr


def test_laptop_install_in_a_restricted_namespace(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    restrict(control_plane, k8s_namespace)
    release, namespace = release_for(k8s_namespace), k8s_namespace
    # --wait: every Deployment and StatefulSet available, which under enforce=restricted
    # means the API server admitted each pod.
    installed = control_plane.helm(
        "install", release, str(CHART), "--namespace", namespace, "-f", str(LAPTOP),
        "--wait", "--timeout", "120s",
    )  # fmt: skip
    prefix = f"{release}-reco-engine"
    # NOTES.txt: what was installed and the next step.
    notes = installed.split("NOTES:", 1)[1]
    print(notes)
    assert f"Kafka       {prefix}-kafka:9092" in notes
    assert f"kubectl -n {namespace} get reco shop -w" in notes
    assert f"helm test {release} -n {namespace}" in notes
    ready = control_plane.kubectl(
        "-n", namespace, "get", "deployments,statefulsets", "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.readyReplicas}/{.spec.replicas} {end}",
    ).split()  # fmt: skip
    assert sorted(ready) == sorted(
        [
            f"{prefix}-operator=1/1",
            f"{prefix}-redis=1/1",
            f"{prefix}-kafka=1/1",
            f"{prefix}-postgresql=1/1",
        ]
    )
    engine = yaml.safe_load(
        control_plane.kubectl("-n", namespace, "get", "reco", "shop", "-o", "yaml")
    )
    assert engine["spec"]["kafka"]["bootstrapServers"] == f"{prefix}-kafka:9092"
    # The API server filled in the CRD's defaults for what the values left out.
    assert engine["spec"]["kafka"]["topic"] == "reco.events"
    assert engine["spec"]["image"]["repository"] == "ghcr.io/reco-engine/reco-engine"
    dashboard = yaml.safe_load(
        control_plane.kubectl(
            "-n", namespace, "get", "configmap", "-l", "grafana_dashboard=1", "-o", "yaml"
        )
    )["items"]
    assert [d["metadata"]["name"] for d in dashboard] == [f"{prefix}-dashboard"]
    assert dashboard[0]["data"]["reco-engine.json"] == (
        CHART / "dashboards" / "reco-engine.json"
    ).read_text().strip("\n")
    _the_operator_has_its_contract_rights_cluster_wide(
        control_plane, namespace, f"{prefix}-operator"
    )
    _helm_test_starts_its_pod_which_kwok_never_completes(control_plane, release, namespace, prefix)


def _the_operator_has_its_contract_rights_cluster_wide(
    plane: ControlPlane, namespace: str, account: str
) -> None:
    sa = f"system:serviceaccount:{namespace}:{account}"
    elsewhere = "default"
    granted = [
        ("create", "deployments.apps", "-n", elsewhere),
        ("delete", "cronjobs.batch", "-n", elsewhere),
        ("patch", "recoengines.recoengine.io/status", "-n", elsewhere),
        ("get", "secrets", "-n", elsewhere),
        ("create", "events.events.k8s.io", "-n", elsewhere),
        ("patch", "horizontalpodautoscalers.autoscaling", "-n", elsewhere),
        ("watch", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "leases.coordination.k8s.io", "-n", namespace),
        ("update", f"leases.coordination.k8s.io/{account}", "-n", namespace),  # its Lease
    ]
    refused = [
        ("delete", "recoengines.recoengine.io", "-n", elsewhere),
        ("list", "secrets", "-n", elsewhere),
        ("create", "secrets", "-n", elsewhere),
        ("create", "pods", "-n", elsewhere),
        ("get", "namespaces"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "leases.coordination.k8s.io", "-n", elsewhere),
        ("update", "leases.coordination.k8s.io/someone-else", "-n", namespace),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
    ]
    assert [q for q in granted if not can_i(plane, sa, *q)] == []
    assert [q for q in refused if can_i(plane, sa, *q)] == []


def _helm_test_starts_its_pod_which_kwok_never_completes(
    plane: ControlPlane, release: str, namespace: str, prefix: str
) -> None:
    """What `helm test` proves under kwok: helm finds the test hook and creates its pod, the
    API server admits it under the restricted standard, and it is scheduled and Running.
    It cannot prove the test passes: no container runs, kwok's pod-complete stage only
    completes Job-owned pods, so helm waits for a phase that never comes."""
    done = subprocess.run(
        [plane.binaries["helm"], "test", release, "--namespace", namespace, "--timeout", "8s"],
        env=plane.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "timed out waiting for the condition" in done.stderr, done.stderr
    pod = yaml.safe_load(
        plane.kubectl("-n", namespace, "get", "pod", f"{prefix}-test", "-o", "yaml")
    )
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["nodeName"].startswith("kwok-node-")
    assert pod["spec"]["containers"][0]["command"] == ["python", "-c"]


def test_single_namespace_install_has_no_rights_outside_its_namespaces(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    watched = [f"{k8s_namespace[:55]}-a", f"{k8s_namespace[:55]}-b"]
    for name in watched:
        control_plane.kubectl("create", "namespace", name)
    try:
        release = release_for(k8s_namespace)
        installed = control_plane.helm(
            "install", release, str(CHART), "--namespace", k8s_namespace,
            "--set", f"watchNamespaces={{{watched[0]},{watched[1]}}}", "--wait", "--timeout", "60s",
        )  # fmt: skip
        prefix = f"{release}-reco-engine"
        notes = installed.split("NOTES:", 1)[1]
        print(notes)
        assert f"the namespaces {watched[0]}, {watched[1]} only" in notes
        # The next step, in a namespace the operator watches.
        assert f"kubectl -n {watched[0]} create secret generic reco-backends" in notes
        assert f"kubectl -n {watched[0]} apply -f manifests/samples/minimal.yaml" in notes
        sa = f"system:serviceaccount:{k8s_namespace}:{prefix}-operator"
        for name in watched:
            assert can_i(control_plane, sa, "create", "deployments.apps", "-n", name)
            assert can_i(control_plane, sa, "get", "secrets", "-n", name)
            assert can_i(control_plane, sa, "update", "recoengines.recoengine.io", "-n", name)
        assert can_i(control_plane, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
        # Not in its own namespace (not watched), nor anywhere else, nor cluster-wide.
        for name in (k8s_namespace, "default"):
            assert not can_i(control_plane, sa, "create", "deployments.apps", "-n", name)
            assert not can_i(control_plane, sa, "get", "secrets", "-n", name)
            assert not can_i(control_plane, sa, "list", "recoengines.recoengine.io", "-n", name)
        assert not can_i(control_plane, sa, "list", "namespaces")
        assert not can_i(control_plane, sa, "list", "recoengines.recoengine.io", "--all-namespaces")
        assert can_i(control_plane, sa, "create", "leases.coordination.k8s.io", "-n", k8s_namespace)
        args = yaml.safe_load(
            control_plane.kubectl(
                "-n", k8s_namespace, "get", "deploy", f"{prefix}-operator", "-o", "yaml"
            )
        )["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[-4:] == ["--namespace", watched[0], "--namespace", watched[1]]
    finally:
        for name in watched:
            control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_upgrade_keeps_the_laptop_password(control_plane: ControlPlane, k8s_namespace: str) -> None:
    """The random password is made once: an upgrade that made a new one would lock the
    engine out of the PostgreSQL that was initialised with the first."""
    release = release_for(k8s_namespace)
    args = (
        "--namespace",
        k8s_namespace,
        "--set",
        "dev.redis.enabled=true,dev.postgresql.enabled=true",
    )
    control_plane.helm("install", release, str(CHART), *args)
    secret = f"{release}-reco-engine-dev-backends"

    def password() -> str:
        return control_plane.kubectl(
            "-n", k8s_namespace, "get", "secret", secret, "-o", "jsonpath={.data.password}"
        )

    first = password()
    control_plane.helm("upgrade", release, str(CHART), *args)
    assert len(first) > 20
    assert password() == first


def test_the_operator_with_the_chart_s_rights_reconciles_the_chart_s_recoengine(
    control_plane: ControlPlane, k8s_namespace: str, kafka_server: KafkaServer, tmp_path: Path
) -> None:
    """helm install with the laptop values, the RecoEngine pointed at the suite's Kafka
    broker; then the operator runs as a process here (kwok runs no container) with the
    token of the chart's ServiceAccount, so that what it may do is exactly what the chart's
    RBAC grants. It creates the topic and every child, and the RecoEngine becomes Ready."""
    release = release_for(k8s_namespace)
    control_plane.helm(
        "install", release, str(CHART), "--namespace", k8s_namespace, "-f", str(LAPTOP),
        "--set", f"recoEngine.spec.kafka.bootstrapServers={kafka_server.bootstrap}",
        "--set", f"recoEngine.spec.kafka.topic=chart-{k8s_namespace}",
    )  # fmt: skip
    account = f"{release}-reco-engine-operator"
    token = control_plane.kubectl(
        "-n", k8s_namespace, "create", "token", account, "--duration=1h"
    ).strip()
    kubeconfig = tmp_path / "operator-kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "reco-test",
                        "cluster": {
                            "server": control_plane.server,
                            "certificate-authority": str(control_plane.pki / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": "operator", "context": {"cluster": "reco-test", "user": account}}
                ],
                "current-context": "operator",
            }
        )
    )
    # The operator as the chart runs it (its args: the release's Lease among them), with a
    # free liveness port and a quicker drift repair (a later flag overrides an earlier one).
    args_path = "jsonpath={.spec.template.spec.containers[0].args}"
    chart_args = json.loads(
        control_plane.kubectl("-n", k8s_namespace, "get", "deployment", account, "-o", args_path)
    )
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        operator = subprocess.Popen(
            [
                sys.executable, "-m", "reco_operator", *chart_args,
                "--liveness-port", str(free_port()), "--repair-interval", "5",
                "--leader-election-namespace", k8s_namespace,
            ],
            env={**control_plane.env(), "KUBECONFIG": str(kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def ready() -> bool:
            out = control_plane.kubectl(
                "-n", k8s_namespace, "get", "recoengine", "shop", "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            )  # fmt: skip
            return out == "True"

        try:
            wait_until(ready, timeout_s=120, every_s=1)
        except AssertionError:
            raise AssertionError(log_path.read_text()[-4000:]) from None
        deployments = control_plane.kubectl(
            "-n", k8s_namespace, "get", "deployments", "-l", "app.kubernetes.io/instance=shop",
            "-o", "jsonpath={.items[*].metadata.name}",
        ).split()  # fmt: skip
        assert sorted(deployments) == ["shop-api", "shop-archiver", "shop-ingest", "shop-processor"]
        assert "Forbidden" not in log_path.read_text(), "the chart's RBAC lacks a right"
    finally:
        operator.kill()
        operator.wait(10)
