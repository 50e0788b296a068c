"""The operator as a real process against the suite's control plane and Kafka broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reco.local.servers import KafkaServer, free_port
from tests.conftest import REPO, wait_until
from tests.support.kube import ControlPlane

CRD = REPO / "manifests" / "crd" / "recoengines.recoengine.io.yaml"
SECRET = "reco-backends"


class OperatorProcess:
    """``python -m reco_operator`` with a short repair interval, its log in a file."""

    def __init__(
        self, plane: ControlPlane, log_path: Path, lease_namespace: str, *args: str
    ) -> None:
        self.plane = plane
        self.lease_namespace = lease_namespace
        self.log_path = log_path
        self.args = args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "reco_operator",
                    "--liveness-port", str(self.port),
                    "--repair-interval", "2",
                    "--leader-election-namespace", self.lease_namespace,
                    "--lease-duration", "6",
                    *self.args,
                ],
                env=self.plane.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"the operator ignored SIGTERM:\n{self.tail()}") from None

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def crd_installed(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD))
    control_plane.wait_established("recoengines.recoengine.io")
    return control_plane


@pytest.fixture
def operator_factory(
    crd_installed: ControlPlane, tmp_path: Path, k8s_namespace: str
) -> Iterator[Callable[..., OperatorProcess]]:
    """Operators that campaign for a Lease in the test's namespace: one test's operators
    never wait for the Lease of another test's killed one."""
    started: list[OperatorProcess] = []

    def start(*args: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        process = OperatorProcess(crd_installed, log, k8s_namespace, *args)
        started.append(process.start())
        return process

    try:
        yield start
    except BaseException:
        for process in started:
            print(f"== {process.log_path}\n{process.tail()}")
        raise
    finally:
        for process in started:
            process.kill()


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    return operator_factory()


class Engines:
    """RecoEngines of one test, in its namespace, against the suite's Kafka."""

    def __init__(self, plane: ControlPlane, namespace: str, kafka: KafkaServer, topic: str) -> None:
        self.plane = plane
        self.namespace = namespace
        self.kafka = kafka
        self.topic = topic

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None) -> str:
        return self.plane.kubectl(*args, "-n", self.namespace, check=check, input_text=input_text)

    def manifest(self, name: str = "shop", **spec: Any) -> dict[str, Any]:
        kafka = {"bootstrapServers": self.kafka.bootstrap, "topic": self.topic, "partitions": 4}
        body: dict[str, Any] = {
            "apiVersion": "recoengine.io/v1alpha1",
            "kind": "RecoEngine",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "kafka": kafka,
                "redis": {"urlSecretRef": {"name": SECRET, "key": "redis-url"}},
                "postgres": {"urlSecretRef": {"name": SECRET, "key": "database-url"}},
                "ingest": {"replicas": 2},
                "processor": {"replicas": 2},
                "api": {"replicas": 2},
                "archiver": {"replicas": 1},
            },
        }  # fmt: skip
        _merge(body["spec"], spec)
        return body

    def apply(self, body: dict[str, Any], *, check: bool = True) -> str:
        return self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(body), check=check)

    def apply_refused(self, body: dict[str, Any]) -> str:
        """Apply what the API server must refuse; its message."""
        done = subprocess.run(
            ["kubectl", "apply", "-f", "-"],
            input=yaml.safe_dump(body),
            env=self.plane.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0, f"accepted: {done.stdout}"
        return done.stderr

    def create_secret(self, **data: str) -> None:
        values = {"redis-url": "redis://redis:6379/0", "database-url": "postgresql://u@pg/reco"}
        values.update(data)
        literals = [f"--from-literal={k}={v}" for k, v in values.items()]
        self.kubectl("create", "secret", "generic", SECRET, *literals)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def engine(self, name: str = "shop") -> dict[str, Any]:
        body = self.get("recoengine", name)
        assert body is not None
        return body

    def condition(self, kind: str, name: str = "shop") -> dict[str, Any]:
        conditions = (self.engine(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == kind), {})

    def ready(self, name: str = "shop") -> bool:
        engine = self.engine(name)
        status = engine.get("status") or {}
        return bool(
            self.condition("Ready", name).get("status") == "True"
            and status.get("observedGeneration") == engine["metadata"]["generation"]
        )

    def wait_ready(self, name: str = "shop", timeout_s: float = 90) -> None:
        wait_until(lambda: self.ready(name), timeout_s=timeout_s, every_s=0.5)

    def events(self, name: str = "shop") -> list[dict[str, Any]]:
        out = self.kubectl(
            "get", "events", "--field-selector",
            f"involvedObject.kind=RecoEngine,involvedObject.name={name}", "-o", "json",
        )  # fmt: skip
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def names(self, kind: str) -> set[str]:
        out = self.kubectl(
            "get", kind, "-l", "app.kubernetes.io/managed-by=reco-operator",
            "-o", "jsonpath={.items[*].metadata.name}",
        )  # fmt: skip
        return set(out.split())


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.fixture
def engines(
    crd_installed: ControlPlane,
    k8s_namespace: str,
    kafka_server: KafkaServer,
) -> Engines:
    topic = f"reco-{k8s_namespace}"[:200]
    return Engines(crd_installed, k8s_namespace, kafka_server, topic)
