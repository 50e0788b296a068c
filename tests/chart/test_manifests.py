"""manifests/: the plain operator install is the chart rendered (make manifests), the laptop
dependencies are the chart's, and every file is accepted by the suite's API server."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, Helm, documents, kubectl, one, restrict
from tests.conftest import REPO
from tests.support.kube import ControlPlane

pytestmark = pytest.mark.chart

MANIFESTS = REPO / "manifests"
SAMPLES = sorted((MANIFESTS / "samples").glob("*.yaml"))


def test_the_operator_manifests_are_the_chart_rendered(helm: Helm) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "render_manifests.py"), "--check"],
        env={**os.environ, "HELM": helm.binary, "HELM_CACHE_HOME": str(helm.home / "cache")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return documents(done.stdout)


@pytest.mark.parametrize("directory", ["crd", "operator", "dev"])
def test_every_kustomization_builds(directory: str) -> None:
    docs = _kustomize(MANIFESTS / directory)
    assert docs
    if directory == "operator":
        kinds = {d["kind"] for d in docs}
        assert {"CustomResourceDefinition", "Namespace", "Deployment", "ClusterRole"} <= kinds
        namespaced = [
            d
            for d in docs
            if d["kind"]
            not in {"CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"}
        ]
        assert {d["metadata"]["namespace"] for d in namespaced} == {"reco-engine"}


def _container_shape(workload: dict[str, Any]) -> dict[str, Any]:
    """A laptop dependency's pod with the names that differ between the chart (release
    prefixed) and manifests/dev (plain) taken out, and labels left aside."""
    pod = copy.deepcopy(workload["spec"]["template"]["spec"])
    for container in pod["containers"]:
        for env in container.get("env", []):
            if "secretKeyRef" in env.get("valueFrom", {}):
                env["valueFrom"]["secretKeyRef"]["name"] = "<secret>"
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            volume["configMap"]["name"] = "<configmap>"
    return pod


def _properties(config_map: dict[str, Any]) -> list[str]:
    lines = config_map["data"]["server.properties"].splitlines()
    return [line for line in lines if not line.startswith(("#", "advertised.listeners="))]


def test_the_laptop_manifests_are_the_charts_laptop_dependencies(helm: Helm) -> None:
    chart = documents(helm.template("-f", str(CHART / "ci" / "laptop-values.yaml")))
    plain = _kustomize(MANIFESTS / "dev")
    for kind, component in (
        ("StatefulSet", "kafka"),
        ("Deployment", "redis"),
        ("StatefulSet", "postgresql"),
    ):
        ours = one(chart, kind, f"reco-reco-engine-{component}")
        theirs = one(plain, kind, component)
        assert _container_shape(theirs) == _container_shape(ours), component
    assert _properties(one(plain, "ConfigMap", "kafka")) == _properties(
        one(chart, "ConfigMap", "reco-reco-engine-kafka")
    )
    # What manifests/samples/minimal.yaml references is what manifests/dev provides.
    minimal = yaml.safe_load((MANIFESTS / "samples" / "minimal.yaml").read_text())["spec"]
    host, port = minimal["kafka"]["bootstrapServers"].split(":")
    assert one(plain, "Service", host)["spec"]["ports"][0]["port"] == int(port)
    secret = one(plain, "Secret", minimal["redis"]["urlSecretRef"]["name"])
    for backend in ("redis", "postgres"):
        ref = minimal[backend]["urlSecretRef"]
        url = secret["stringData"][ref["key"]]
        host, port = url.split("@", 1)[1].split("/", 1)[0].split(":")
        assert one(plain, "Service", host)["spec"]["ports"][0]["port"] == int(port)


@pytest.mark.usefixtures("crd_established")
def test_the_operator_manifests_are_accepted_by_the_api_server(
    control_plane: ControlPlane, k8s_namespace: str, tmp_path: Path
) -> None:
    """Dry run in a namespace of the test's own (a kustomize overlay moves it there), so that
    nothing cluster-scoped is left behind; the CRD and the Namespace are the session's."""
    restrict(control_plane, k8s_namespace)
    (tmp_path / "kustomization.yaml").write_text(
        # kustomize takes a base by a relative path only.
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(MANIFESTS / "operator", tmp_path)],
                "namespace": k8s_namespace,
            }
        )
    )
    docs = [
        d
        for d in _kustomize(tmp_path)
        if d["kind"] not in ("Namespace", "CustomResourceDefinition")
    ]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == k8s_namespace
    done = kubectl(
        control_plane, "apply", "--dry-run=server", "-f", "-", input_text=yaml.safe_dump_all(docs)
    )
    assert done.returncode == 0, done.stderr
    assert "would violate PodSecurity" not in done.stderr, done.stderr
    assert done.stdout.count("(server dry run)") == len(docs)
    # The Namespace object itself, as the plain install creates it.
    namespace = one(_kustomize(MANIFESTS / "operator"), "Namespace")
    done = kubectl(
        control_plane, "apply", "--dry-run=server", "-f", "-", input_text=yaml.safe_dump(namespace)
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.usefixtures("crd_established")
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_every_sample_is_a_valid_recoengine(
    control_plane: ControlPlane, k8s_namespace: str, sample: Path
) -> None:
    done = kubectl(
        control_plane, "apply", "--dry-run=server", "-n", k8s_namespace, "-f", str(sample)
    )
    assert done.returncode == 0, done.stderr
    assert "recoengine.recoengine.io/" in done.stdout


@pytest.mark.usefixtures("crd_established")
def test_laptop_dependencies_and_the_minimal_sample_install_in_a_restricted_namespace(
    control_plane: ControlPlane, k8s_namespace: str
) -> None:
    restrict(control_plane, k8s_namespace)
    control_plane.kubectl("apply", "-n", k8s_namespace, "-k", str(MANIFESTS / "dev"))
    control_plane.kubectl(
        "apply", "-n", k8s_namespace, "-f", str(MANIFESTS / "samples" / "minimal.yaml")
    )
    # Available means the API server admitted each pod under enforce=restricted.
    for workload in ("statefulset/kafka", "deployment/redis", "statefulset/postgresql"):
        control_plane.kubectl("-n", k8s_namespace, "rollout", "status", workload, "--timeout=60s")
    engine = yaml.safe_load(
        control_plane.kubectl("-n", k8s_namespace, "get", "reco", "shop", "-o", "yaml")
    )
    assert engine["spec"]["processor"]["replicas"] == 2  # a CRD default
