"""KEDA itself on the suite's control plane: its operator and its metrics apiserver (the
"adapter") as local processes, from the binaries ``tools/install-keda.sh`` builds.

:class:`Keda` installs every CRD of the release, starts the operator (it turns each
ScaledObject into an HPA and serves the scalers' metrics over gRPC) and the adapter (the
``external.metrics.k8s.io`` API the HPA controller reads, which asks the operator), and
registers the adapter as the ``v1beta1.external.metrics.k8s.io`` APIService, reached on
127.0.0.1 through an ExternalName Service like the suite's own metrics adapter
(:mod:`tests.support.metrics_adapter`). Only one backend can own that APIService: a
registration found at the start is put back at the end.

How the pieces trust each other, as in a cluster where KEDA makes its own certificates
(``--enable-cert-rotation``), but with one certificate from the cluster CA: the operator's
gRPC server and the adapter's gRPC client both load ``ca.crt``, ``tls.crt`` and ``tls.key``
from ``--cert-dir`` and require each other's certificate (mutual TLS), so it carries both
usages; the adapter's delegated authentication trusts the aggregator's front-proxy client
certificate (from the apiserver's ``extension-apiserver-authentication`` ConfigMap) and
authorises the forwarded user with SubjectAccessReviews; the APIService verifies the adapter
with the cluster CA.

Both processes watch one namespace (the test's): a session's other tests leave
ScaledObjects in namespaces still being deleted, which this KEDA must not act on.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from reco.local.servers import LOOPBACK, free_ports, tail, tools_dir
from tests.support.kube import ControlPlane, KubeError

logger = logging.getLogger(__name__)

APISERVICE = "v1beta1.external.metrics.k8s.io"
SERVICE = "keda-metrics-apiserver"
OPERATOR_SERVICE = "keda-operator"


class KedaError(RuntimeError):
    """KEDA could not be built, started or reached."""


def keda_binaries() -> dict[str, str]:
    """Paths of KEDA's operator and adapter and of its CRDs' directory, building what is
    missing (``tools/install-keda.sh``: about 12 minutes on 2 cores the first time)."""
    script = tools_dir() / "install-keda.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KedaError(
            f"{script} failed (exit {done.returncode}); KEDA is built from the Go module "
            f"proxy and the KEDA loop test needs it:\n{done.stderr.strip()[-3000:]}"
        )
    paths = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    missing = [name for name, path in paths.items() if not Path(path).exists()]
    if missing or not {"keda-operator", "keda-adapter", "crds"} <= set(paths):
        raise KedaError(f"{script} did not produce {missing or paths}: run it by hand to see why")
    return paths


class Keda:
    """KEDA's CRDs, operator and adapter for one namespace; :meth:`close` undoes it all."""

    def __init__(self, plane: ControlPlane, namespace: str, run_dir: Path) -> None:
        self.plane = plane
        self.namespace = namespace
        self.dir = run_dir
        self.binaries = keda_binaries()
        (
            self.metrics_port,
            self.probe_port,
            self.grpc_port,
            self.secure_port,
            self.adapter_metrics_port,
        ) = free_ports(5)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._crds_added: list[str] = []
        self._previous_apiservice: dict[str, Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 90) -> Keda:
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._install_crds()
        certs = self._certificates()
        env = {
            **self.plane.env(),
            "WATCH_NAMESPACE": self.namespace,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": self.namespace,
            "POD_NAMESPACE": self.namespace,
        }
        self._spawn(
            "keda-operator",
            [
                "--leader-elect=false",
                f"--metrics-bind-address={LOOPBACK}:{self.metrics_port}",
                f"--health-probe-bind-address={LOOPBACK}:{self.probe_port}",
                f"--metrics-service-bind-address={LOOPBACK}:{self.grpc_port}",
                f"--cert-dir={certs}",
                f"--ca-dir={certs}",
                "--zap-log-level=info",
            ],
            env,
        )
        self._wait("the KEDA operator's /readyz", self._operator_ready, timeout_s)
        kubeconfig = str(self.plane.kubeconfig)
        self._spawn(
            "keda-adapter",
            [
                f"--secure-port={self.secure_port}",
                f"--bind-address={LOOPBACK}",
                # Its Prometheus endpoint: there is no flag to keep it off other interfaces.
                f"--port={self.adapter_metrics_port}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--metrics-service-address={LOOPBACK}:{self.grpc_port}",
                # The name the operator's certificate carries, as in a cluster.
                "--metrics-service-grpc-authority="
                f"{OPERATOR_SERVICE}.{self.namespace}.svc.cluster.local",
            ],
            env,
        )
        self._register(timeout_s)
        logger.info("KEDA up in %.1f s", time.monotonic() - started)
        return self

    def close(self) -> None:
        """Unregister the adapter (restoring a registration found at the start), stop both
        processes, and remove the CRDs this instance added: ScaledObjects lose the finalizer
        the stopped operator would have removed, so the CRDs can go."""
        self.plane.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        if self._previous_apiservice is not None:
            self.plane.kubectl(
                "apply", "-f", "-", input_text=json.dumps(self._previous_apiservice), check=False
            )
        for name in ("keda-adapter", "keda-operator"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if "scaledobjects.keda.sh" in self._crds_added:
            for kind in ("scaledobjects", "scaledjobs", "triggerauthentications"):
                names = self.plane.kubectl(
                    "get", kind, "-n", self.namespace, "-o", "name", check=False
                ).split()
                for name in names:
                    self.plane.kubectl(
                        "patch", name, "-n", self.namespace, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}', check=False,
                    )  # fmt: skip
        for crd in self._crds_added:
            self.plane.kubectl(
                "delete", "crd", crd, "--ignore-not-found", "--wait=true", "--timeout=60s",
                check=False,
            )  # fmt: skip

    # -- what tests read --------------------------------------------------------------------

    def report(self, lines: int = 25) -> str:
        parts = []
        for name in ("keda-operator", "keda-adapter"):
            parts.append(f"== {name}\n{tail(self.dir / f'{name}.log', lines)}")
        return "\n".join(parts)

    # -- internals ----------------------------------------------------------------------------

    def _install_crds(self) -> None:
        present = set(
            self.plane.kubectl("get", "crd", "-o", "jsonpath={.items[*].metadata.name}").split()
        )
        for path in sorted(Path(self.binaries["crds"]).glob("*.yaml")):
            self.plane.kubectl("apply", "--server-side", "-f", str(path))
        wanted = self.plane.kubectl(
            "get", "crd", "-o", "jsonpath={.items[*].metadata.name}"
        ).split()
        for crd in wanted:
            if crd.endswith("keda.sh"):
                self.plane.wait_established(crd)
                if crd not in present:
                    self._crds_added.append(crd)

    def _certificates(self) -> Path:
        """``ca.crt``, ``tls.crt``, ``tls.key`` in a directory both processes read."""
        hosts = [
            f"{OPERATOR_SERVICE}.{self.namespace}.svc.cluster.local",
            f"{SERVICE}.{self.namespace}.svc",
            LOOPBACK,
        ]
        crt, key = self.plane.issue_serving_certificate(
            f"keda-{self.namespace}"[:60], hosts, usage="serverAuth,clientAuth"
        )
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        (certs / "ca.crt").write_bytes((self.plane.pki / "ca.crt").read_bytes())
        (certs / "tls.crt").write_bytes(crt.read_bytes())
        (certs / "tls.key").write_bytes(key.read_bytes())
        (certs / "tls.key").chmod(0o600)
        return certs

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with (self.dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [self.binaries[name], *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _operator_ready(self) -> bool:
        try:
            url = f"http://{LOOPBACK}:{self.probe_port}/readyz"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, what: str, ready: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise KedaError(
                        f"{name} exited {proc.returncode} while waiting for {what}:\n"
                        f"{tail(self.dir / f'{name}.log')}"
                    )
            if time.monotonic() > deadline:
                raise KedaError(f"{what}: not within {timeout_s} s\n{self.report()}")
            time.sleep(0.2)

    def _register(self, timeout_s: float) -> None:
        existing = self.plane.kubectl(
            "get", "apiservice", APISERVICE, "-o", "json", "--ignore-not-found"
        )
        if existing.strip():
            body = json.loads(existing)
            body.pop("status", None)
            meta = body["metadata"]
            body["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
            self._previous_apiservice = body
        bundle = base64.b64encode((self.plane.pki / "ca.crt").read_bytes()).decode()
        items = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": self.namespace},
                "spec": {"type": "ExternalName", "externalName": LOOPBACK},
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": APISERVICE},
                "spec": {
                    "group": "external.metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {
                        "name": SERVICE,
                        "namespace": self.namespace,
                        "port": self.secure_port,
                    },
                    "caBundle": bundle,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ]
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        self.plane.kubectl("apply", "-f", "-", input_text=body)
        available = '{.status.conditions[?(@.type=="Available")]}'

        def ready() -> bool:
            out = self.plane.kubectl("get", "apiservice", APISERVICE, "-o", f"jsonpath={available}")
            return bool(out) and json.loads(out).get("status") == "True"

        try:
            self._wait(f"the APIService {APISERVICE} Available", ready, timeout_s)
        except KubeError as exc:
            raise KedaError(str(exc)) from exc
