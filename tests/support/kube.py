"""A real Kubernetes control plane for the test suite, on 127.0.0.1 and free ports.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (which plays the
kubelet for fake nodes: pods bound to them become Running and Ready, nothing runs) as
child processes, from the binaries ``tools/install-k8s.sh`` builds into a cache. Every
start is a fresh cluster (etcd's data is wiped); the certificates are made once per
control plane with openssl: a cluster CA, the apiserver's serving certificate, a
``system:masters`` client certificate for the suite, the service-account signing key, and
a front-proxy CA and client (the aggregation layer, for metrics APIs).

Nothing here is a mock; a component that cannot be built or started raises
:class:`KubeError` with what to do.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from reco.local.servers import LOOPBACK, free_ports, tools_dir

logger = logging.getLogger(__name__)

VERSION = "v1.37.2"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
TEST_CONTEXT = "reco-test"
# Components start in this order and stop in the reverse one.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class KubeError(RuntimeError):
    """The control plane could not be built, started or reached."""


def kube_binaries() -> dict[str, str]:
    """Paths of the control-plane binaries, helm and skaffold, building what is missing
    (``tools/install-k8s.sh``: about 12 minutes on 2 cores the first time, then cached)."""
    script = tools_dir() / "install-k8s.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-30:])
        raise KubeError(f"{script} failed (exit {result.returncode}):\n{tail}")
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    missing = [name for name, path in paths.items() if not Path(path).exists()]
    if missing:
        raise KubeError(f"{script} did not produce {missing}")
    return paths


class ControlPlane:
    """etcd + kube-apiserver (+ controller-manager, scheduler, kwok with fake nodes)."""

    def __init__(
        self,
        *,
        fake_nodes: int = 1,
        controller_manager_args: tuple[str, ...] = (),
        apiserver_args: tuple[str, ...] = (),
        base_dir: str | Path | None = None,
    ) -> None:
        self.binaries = kube_binaries()
        self.fake_nodes = fake_nodes
        self.controller_manager_args = controller_manager_args
        self.apiserver_args = apiserver_args
        self.dir = Path(tempfile.mkdtemp(prefix="reco-kube-", dir=base_dir))
        self.pki = self.dir / "pki"
        self.kubeconfig = self.dir / "kubeconfig"
        self.api_port = 0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        started = time.monotonic()
        self._make_certificates()
        etcd, peer, api, kcm, sched, kwok = free_ports(6)
        self.api_port = api
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)
        try:
            self._spawn("etcd", self._etcd_args(etcd, peer))
            self._wait("etcd", lambda: _http_ok(f"http://{LOOPBACK}:{etcd}/health"), 30)
            self._spawn("kube-apiserver", self._apiserver_args(etcd, api))
            self._wait("kube-apiserver", lambda: self._get_text("/readyz") == "ok", 120)
            self._write_kubeconfig()
            self._spawn("kube-controller-manager", self._kcm_args(kcm))
            self._spawn("kube-scheduler", self._scheduler_args(sched))
            self._spawn("kwok", self._kwok_args(kwok))
            # Pods are refused until the namespace's default ServiceAccount exists, which
            # the controller-manager creates.
            self._wait(
                "default ServiceAccount",
                lambda: self._get_json("/api/v1/namespaces/default/serviceaccounts/default"),
                60,
            )
            for index in range(self.fake_nodes):
                self._create_fake_node(f"kwok-node-{index}")
            for index in range(self.fake_nodes):
                self._wait(f"node kwok-node-{index}", lambda i=index: self._node_ready(i), 60)
        except BaseException:
            self.stop()
            raise
        logger.info("control plane up in %.1f s", time.monotonic() - started)
        return self

    def stop(self) -> None:
        for name in reversed(COMPONENTS):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop()
        if not os.environ.get("RECO_KEEP_SERVER_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what tests use ---------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.api_port}"

    def env(self) -> dict[str, str]:
        """Environment for kubectl, helm and kubernetes clients aimed at this cluster."""
        bin_dir = str(Path(self.binaries["helm"]).parent)
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "HELM_CACHE_HOME": str(self.dir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.dir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.dir / "helm" / "data"),
        }

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None) -> str:
        """Run kubectl against this cluster; its stdout, or raise with its stderr."""
        return self._run(["kubectl", *args], check=check, input_text=input_text)

    def helm(self, *args: str, check: bool = True) -> str:
        return self._run([self.binaries["helm"], *args], check=check)

    def wait_established(self, crd: str, timeout_s: float = 60) -> None:
        """Wait until a CRD just applied is served. Not ``kubectl wait``: it fails at once
        on an object whose status has no conditions yet, as a CRD's has for a moment (and
        so does a jsonpath filter over them: a failed ``get`` is "not yet" too)."""
        established = '{.status.conditions[?(@.type=="Established")].status}'
        deadline = time.monotonic() + timeout_s
        while (
            self.kubectl("get", "crd", crd, "-o", f"jsonpath={established}", check=False) != "True"
        ):
            if time.monotonic() > deadline:
                raise KubeError(f"CRD {crd} not Established within {timeout_s} s")
            time.sleep(0.1)

    def issue_serving_certificate(
        self, name: str, hosts: list[str], *, usage: str = "serverAuth"
    ) -> tuple[Path, Path]:
        """A server certificate (and its key) signed by the cluster CA, for a server of the
        suite that the apiserver calls (an aggregated API): ``hosts`` are DNS names or IPs.
        ``usage="serverAuth,clientAuth"`` for a pair of servers that also call each other
        with it (mutual TLS)."""
        ca = _CertificateAuthority(self.pki, "ca", "reco-test-ca", create=False)
        sans = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        # The CN is informative only (and at most 64 characters): clients check the SANs.
        ca.issue(name, f"/CN={name[:64]}", usage, f"subjectAltName={sans}")
        return self.pki / f"{name}.crt", self.pki / f"{name}.key"

    def log(self, component: str, lines: int = 40) -> str:
        path = self.dir / "logs" / f"{component}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _run(self, argv: list[str], *, check: bool, input_text: str | None = None) -> str:
        done = subprocess.run(
            argv, env=self.env(), capture_output=True, text=True, input=input_text, check=False
        )
        if check and done.returncode != 0:
            raise KubeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            self._procs[name] = subprocess.Popen(
                [self.binaries[name], *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _wait(self, what: str, ready: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise KubeError(f"{name} exited {proc.returncode}:\n{self.log(name)}")
            with suppress(Exception):
                if ready():
                    return
            time.sleep(0.2)
        component = next((c for c in reversed(COMPONENTS) if c in self._procs), "etcd")
        raise KubeError(f"{what} not ready in {timeout_s:.0f} s:\n{self.log(component)}")

    def _etcd_args(self, port: int, peer: int) -> list[str]:
        client, peer_url = f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{peer}"
        return [
            "--name=local",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self, etcd: int, port: int) -> list[str]:
        p = self.pki
        return [
            f"--etcd-servers=http://{LOOPBACK}:{etcd}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=Node,RBAC",
            # The kubernetes Endpoints would hold 127.0.0.1, which validation refuses.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            # The aggregation layer (metrics APIs served by the suite): the apiserver proves
            # itself to the backends with this client certificate.
            f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            *self.apiserver_args,
        ]

    def _kcm_args(self, port: int) -> list[str]:
        p = self.pki
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            "--leader-elect=false",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            "--use-service-account-credentials=true",
            "--controllers=*",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            *self.controller_manager_args,
        ]

    def _scheduler_args(self, port: int) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            "--leader-elect=false",
        ]

    def _kwok_args(self, port: int) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.binaries['kwok-stages']}",
            "--node-lease-duration-seconds=40",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            f"--server-address={LOOPBACK}:{port}",
            "--cidr=10.244.0.1/16",
            "--node-ip=10.244.0.1",
        ]

    # -- certificates and kubeconfig ----------------------------------------------------------

    def _make_certificates(self) -> None:
        if (self.pki / "sa.pub").exists():
            return
        self.pki.mkdir(parents=True, exist_ok=True)
        ca = _CertificateAuthority(self.pki, "ca", "reco-test-ca")
        # AKI/SKI and key usages make the certificates pass Python's strict X.509 checks.
        ca.issue(
            "apiserver",
            "/CN=kube-apiserver",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1",
        )
        ca.issue("admin", "/O=system:masters/CN=reco-test-admin", "clientAuth")
        front = _CertificateAuthority(self.pki, "front-proxy-ca", "reco-test-front-proxy-ca")
        front.issue("front-proxy-client", "/CN=front-proxy-client", "clientAuth")
        _openssl("genrsa", "-out", str(self.pki / "sa.key"), "2048")
        _openssl(
            "rsa", "-in", str(self.pki / "sa.key"), "-pubout", "-out", str(self.pki / "sa.pub")
        )

    def _write_kubeconfig(self) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "reco-test",
                    "cluster": {"server": self.server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            # The context's name marks the cluster as a test one: the suite's guard refuses
            # to run cluster tests against any other context.
            "contexts": [
                {"name": "reco-test", "context": {"cluster": "reco-test", "user": "admin"}}
            ],
            "current-context": "reco-test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    # -- REST, for start-up only (tests use the kubernetes client or kubectl) ------------------

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _request(self, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5, context=self._ssl()) as response:
            payload: bytes = response.read()
            return payload

    def _get_text(self, path: str) -> str:
        return self._request(path).decode()

    def _get_json(self, path: str) -> Any:
        return json.loads(self._request(path))

    def _create_fake_node(self, name: str) -> None:
        """A Node kwok keeps Ready, without taints, so that ordinary pods schedule on it."""
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        self._request(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
                "status": {"allocatable": capacity, "capacity": capacity},
            },
        )

    def _node_ready(self, index: int) -> bool:
        node = self._get_json(f"/api/v1/nodes/kwok-node-{index}")
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class _CertificateAuthority:
    def __init__(self, pki: Path, name: str, common_name: str, *, create: bool = True) -> None:
        """A new CA, or (``create=False``) the one already in ``pki`` under ``name``."""
        self.pki = pki
        self.crt, self.key = pki / f"{name}.crt", pki / f"{name}.key"
        if not create:
            return
        _openssl("genrsa", "-out", str(self.key), "2048")
        _openssl(
            "req", "-x509", "-new", "-nodes", "-key", str(self.key), "-days", "3650",
            "-subj", f"/CN={common_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-addext", "subjectKeyIdentifier=hash",
            "-out", str(self.crt),
        )  # fmt: skip

    def issue(self, name: str, subject: str, usage: str, extra: str = "") -> None:
        key, csr, crt = (self.pki / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.pki / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n" + (f"{extra}\n" if extra else "")
        )
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.crt), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "3650", "-extfile", str(ext), "-out", str(crt),
        )  # fmt: skip
        key.chmod(0o600)


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise KubeError("openssl not found; install it (Debian: apt-get install openssl)")
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KubeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)
