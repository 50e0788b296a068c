"""The `helm test` pod's script, exactly as the chart renders it, run against a real engine.

Under kwok the test pod never runs (test_cluster.py says why), so this is where its logic
is proven: against `reco dev` (ingest and api in one process on one port, the same HTTP
contract as the Services) it passes, and against nothing it fails with what to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import CHART, Helm, documents, one
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.chart


@pytest.fixture(scope="module")
def test_pod(helm: Helm) -> dict[str, Any]:
    rendered = helm.template(
        "-f",
        str(CHART / "ci" / "laptop-values.yaml"),
        "--show-only",
        "templates/tests/test-recommendations.yaml",
    )
    container: dict[str, Any] = one(documents(rendered), "Pod")["spec"]["containers"][0]
    return container


@pytest.fixture
def engine_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "reco-dev.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("reco")),
            "dev",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"reco dev exited {proc.returncode}: {(tmp_path / 'reco-dev.log').read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until(ready, timeout_s=60, every_s=0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def _run(
    container: dict[str, Any], ingest: str, api: str, timeout_s: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable if part == "python" else part for part in container["command"]]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(RECO_TEST_INGEST_URL=ingest, RECO_TEST_API_URL=api, RECO_TEST_TIMEOUT_S=timeout_s)
    return subprocess.run(
        [*command, *container["args"]],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_passes_against_a_working_engine(test_pod: dict[str, Any], engine_url: str) -> None:
    done = _run(test_pod, engine_url, engine_url, "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "events accepted 3 events" in done.stdout
    assert "/recommendations recommends helm-test-" in done.stdout
    assert "viewed together with helm-test-" in done.stdout


def test_it_fails_with_where_to_look_when_ingest_is_unreachable(test_pod: dict[str, Any]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    done = _run(test_pod, closed, closed, "2")
    assert done.returncode == 1
    assert "FAILED: POST" in done.stderr
    assert "kubectl logs deploy/shop-ingest" in done.stderr


def test_it_fails_when_the_api_never_recommends(test_pod: dict[str, Any], engine_url: str) -> None:
    """Events accepted by one engine, recommendations asked of another that never saw them:
    the failure names the processor and the api."""
    other = f"http://127.0.0.1:{free_port()}"
    done = _run(test_pod, engine_url, other, "3")
    assert done.returncode == 1
    assert "did not recommend helm-test-" in done.stderr
    assert "deploy/shop-processor" in done.stderr
