"""The chart tier's helpers: the helm the suite builds (tools/install-k8s.sh), the chart,
its ci/ scenarios, and renders parsed into documents.

Tests that need no cluster use :func:`helm` alone (helm reads no kubeconfig for `lint` and
`template`); the others take the session ``control_plane`` and run helm through it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.support.kube import ControlPlane, kube_binaries

CHART = REPO / "charts" / "reco-engine"
CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
CI_IDS = [path.name.removesuffix("-values.yaml") for path in CI_FILES]
CRD_FILE = REPO / "manifests" / "crd" / "recoengines.recoengine.io.yaml"
# The namespaces ci/single-namespace-values.yaml lists; the API server wants them to exist
# before it accepts Roles in them.
SINGLE_NAMESPACE_TARGETS = ("reco-shop-a", "reco-shop-b")


@dataclass(frozen=True)
class Helm:
    """helm 3 without a cluster: its caches and config in a directory of the test session."""

    binary: str
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            # No kubeconfig: `template` and `lint` must not need a cluster.
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        }
        done = subprocess.run(
            [self.binary, *args], env=env, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
            )
        return done

    def template(self, *args: str, release: str = "reco", namespace: str = "reco") -> str:
        return self.run("template", release, str(CHART), "--namespace", namespace, *args).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(kube_binaries()["helm"], tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def crd_established(control_plane: ControlPlane) -> None:
    """The RecoEngine CRD in the session's cluster, served, before anything uses it."""
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    control_plane.wait_established("recoengines.recoengine.io")


@pytest.fixture(scope="session")
def single_namespace_targets(control_plane: ControlPlane) -> Iterator[tuple[str, ...]]:
    for name in SINGLE_NAMESPACE_TARGETS:
        _ensure_namespace(control_plane, name)
    yield SINGLE_NAMESPACE_TARGETS
    for name in SINGLE_NAMESPACE_TARGETS:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _ensure_namespace(plane: ControlPlane, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    plane.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(manifest))


def kubectl(
    plane: ControlPlane, *args: str, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl with its stderr too: the API server's warnings arrive there."""
    return subprocess.run(
        ["kubectl", *args],
        env=plane.env(),
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )


def restrict(plane: ControlPlane, namespace: str) -> None:
    """Enforce the restricted Pod Security Standard in ``namespace`` and warn about any
    workload that breaks it: the API server then refuses a non-compliant pod, and names a
    non-compliant Deployment or StatefulSet in a warning even on a dry run."""
    plane.kubectl(
        "label",
        "namespace",
        namespace,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
