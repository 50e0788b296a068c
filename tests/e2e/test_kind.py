"""make e2e-kind as a test: a kind cluster, the images built and loaded, the chart installed,
a RecoEngine Ready, events in and recommendations out (tools/e2e-kind.sh).

It needs a Docker engine and kind, which the machines that run this suite do not have
(TESTING.md): there it is reported as skipped with the reason, never as passed. On a laptop
with both it runs for real (~5-10 minutes: image builds, image pulls, a cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

E2E_TIMEOUT_S = 45 * 60


def why_it_cannot_run() -> str | None:
    prefix = "needs a Docker engine and kind: "
    if shutil.which("docker") is None:
        return prefix + "no `docker` on PATH"
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return prefix + "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return prefix + f"`docker info` failed: {detail}"
    if shutil.which("kind") is None:
        return prefix + "no `kind` on PATH (https://kind.sigs.k8s.io/docs/user/quick-start/)"
    return None


def test_events_in_recommendations_out_on_kind() -> None:
    reason = why_it_cannot_run()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ)
    if shutil.which("helm") is None and "HELM" not in env:
        from tests.support.kube import kube_binaries

        env["HELM"] = kube_binaries()["helm"]
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "e2e-kind.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=E2E_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert "e2e-kind passed" in done.stdout
