"""skaffold.yaml with the real skaffold (2.16.1, built by tools/install-k8s.sh), offline and
without a Docker engine: the schema is current, the config resolves, and a render installs
the chart with the images skaffold builds (tools of skaffold that need a daemon, `build`,
`dev`, `run`, are for a laptop: README "Kubernetes")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import documents, one
from tests.conftest import REPO
from tests.support.kube import kube_binaries

pytestmark = pytest.mark.chart

ENGINE = "ghcr.io/reco-engine/reco-engine"
OPERATOR = "ghcr.io/reco-engine/reco-engine-operator"


@pytest.fixture(scope="module")
def skaffold(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binaries = kube_binaries()
    home = tmp_path_factory.mktemp("skaffold-home")
    env = {
        **os.environ,
        # skaffold writes ~/.skaffold (config, cache); helm must be a helm 3, since skaffold
        # runs `helm version --client`, which helm 4 refuses.
        "HOME": str(home),
        "PATH": f"{Path(binaries['helm']).parent}:{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(home / "no-kubeconfig"),
        "SKAFFOLD_UPDATE_CHECK": "false",
    }
    for key in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[key] = str(home / key.lower())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binaries["skaffold"], *args, "--update-check=false"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def test_the_config_is_the_current_schema(skaffold: Any) -> None:
    done = skaffold("fix")
    assert done.returncode == 0, done.stderr
    assert "config is already version skaffold/v4beta13" in done.stdout + done.stderr


def test_the_config_resolves(skaffold: Any) -> None:
    done = skaffold("diagnose", "--yaml-only")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in config["build"]["artifacts"]}
    assert artifacts == {
        ENGINE: "images/engine/Dockerfile",
        OPERATOR: "images/operator/Dockerfile",
    }
    for dockerfile in artifacts.values():
        assert (REPO / dockerfile).is_file(), dockerfile
    release = config["deploy"]["helm"]["releases"][0]
    assert Path(release["chartPath"]) == REPO / "charts" / "reco-engine"
    forwards = {(f["resourceName"], f["port"]) for f in config["portForward"]}
    assert forwards == {("shop-api", 8080), ("shop-ingest", 8081)}


def test_render_installs_the_chart_with_the_built_operator_image(skaffold: Any) -> None:
    done = skaffold("render", "--offline=true", "--digest-source=tag", "-t", "test")
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    operator = one(docs, "Deployment", "reco-reco-engine-operator")
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == f"{OPERATOR}:test"
    # The default profile installs the chart's defaults: no RecoEngine, no laptop backends.
    assert not [d for d in docs if d["kind"] in ("RecoEngine", "StatefulSet")]


def test_the_kind_profile_adds_the_laptop_and_a_recoengine_on_the_built_images(
    skaffold: Any,
) -> None:
    # --default-repo rewrites every built image's name, which shows that the names in the
    # render are skaffold's, not the chart's defaults.
    done = skaffold(
        "render", "-p", "kind", "--offline=true", "--digest-source=tag", "-t", "test",
        "--default-repo", "localhost:5001",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    operator = one(docs, "Deployment", "reco-reco-engine-operator")
    image = operator["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "localhost:5001/ghcr_io_reco-engine_reco-engine-operator:test"
    engine = one(docs, "RecoEngine", "shop")
    assert engine["spec"]["image"] == {
        "repository": "localhost:5001/ghcr_io_reco-engine_reco-engine",
        "tag": "test",
    }
    test_pod = one(docs, "Pod")
    assert test_pod["spec"]["containers"][0]["image"] == (
        "localhost:5001/ghcr_io_reco-engine_reco-engine:test"
    )
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for name in ("kafka", "postgresql"):
        assert ("StatefulSet", f"reco-reco-engine-{name}") in kinds
    assert ("Deployment", "reco-reco-engine-redis") in kinds
    assert ("ConfigMap", "reco-reco-engine-dashboard") in kinds
