"""The suite's kubelet for the engine: real engine processes for the pods kwok runs.

kwok marks the pods of the control plane's fake nodes Running and Ready, but nothing runs
in them. :class:`Kubelet` fills that gap for one RecoEngine: it polls the pods of the
roles it is given (``app.kubernetes.io/instance=<engine>``), and for each pod that is
Running and not terminating it starts the real role (``python -m reco.cli <role>``, a
:class:`~reco.local.stack.ServiceProcess`) on 127.0.0.1 with the environment the pod's
container declares: its ``env`` (values and ``secretKeyRef``s, read from the Secrets) and
its ``envFrom`` ConfigMap, so the process gets the Kafka bootstrap, topic, group, Redis
URL and prefix, and the engine settings the operator wrote. ``RECO_HOST`` and
``RECO_PORT`` are replaced by 127.0.0.1 and a free port. When the pod is deleted (or gets
a deletionTimestamp) the process gets SIGTERM, as a kubelet would send it: it drains its
batch, commits and leaves the consumer group.

It probes each new process's ``/health/ready`` until it answers, and :meth:`Kubelet.ready`
lists the processes that did (what a Service would route to); it cannot tell the API
server, where kwok has marked the pod Ready at once. What it does not do: restarts
of a crashed process, resource limits. kwok deletes a terminating pod at once, so the
process may outlive its pod by the few seconds its drain takes (a real kubelet keeps the
pod until then).

:class:`Timeline` samples columns once a second (pods, processes, whatever a test adds) so
that a test can print what happened when.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

from reco.local.exceptions import ServiceError
from reco.local.stack import ServiceProcess
from tests.support.kube import ControlPlane

logger = logging.getLogger(__name__)

INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"


def api_client(plane: ControlPlane) -> client.ApiClient:
    """A kubernetes client of the suite's admin on ``plane``."""
    return config.new_client_from_config(config_file=str(plane.kubeconfig))


class Kubelet:
    """Runs a real engine process per Running pod of ``roles`` of one RecoEngine."""

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        engine: str,
        roles: Iterable[str],
        log_dir: Path,
        *,
        poll_s: float = 0.25,
    ) -> None:
        self.namespace = namespace
        self.engine = engine
        self.roles = tuple(roles)
        self.log_dir = log_dir
        self.poll_s = poll_s
        self.core = client.CoreV1Api(api_client(plane))
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, ServiceProcess]] = {}  # pod -> (role, process)
        self._pods: dict[str, int] = dict.fromkeys(self.roles, 0)
        self._stoppers: list[threading.Thread] = []
        self._ready: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self.log: list[str] = []
        """What it did, one line per start and stop, with the second it happened."""
        self.errors: list[str] = []

    # -- what tests read --------------------------------------------------------------------

    def processes(self, role: str) -> list[ServiceProcess]:
        """The live processes of ``role`` (started, not exited, not told to stop)."""
        with self._lock:
            return [
                p
                for r, p in self._running.values()
                if r == role and p.proc is not None and p.proc.poll() is None
            ]

    def ready(self, role: str) -> list[ServiceProcess]:
        """The live processes of ``role`` that have answered their readiness probe (what a
        Service would send requests to)."""
        return [p for p in self.processes(role) if p.url in self._ready]

    def pods(self, role: str) -> int:
        """Pods of ``role`` Running and not terminating at the last poll."""
        with self._lock:
            return self._pods.get(role, 0)

    def started(self, role: str) -> int:
        """Processes of ``role`` started so far."""
        return sum(1 for line in self.log if f" start {role} " in line)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Kubelet:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop polling and SIGTERM every process (SIGKILL what ignores it)."""
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            running = list(self._running.items())
            self._running.clear()
        for pod, (_, process) in running:
            self._terminate(pod, process)
        for stopper in self._stoppers:
            stopper.join(40)

    def tails(self, lines: int = 30) -> str:
        with self._lock:
            running = list(self._running.items())
        return "\n".join(f"== {pod}\n{p.tail(lines)}" for pod, (_, p) in running)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # the API server busy for a moment: poll again
                logger.warning("kubelet: %s", exc)
                self.errors.append(f"{self._now():6.1f} {exc!r}")
            self._stop.wait(self.poll_s)

    def _sync(self) -> None:
        selector = f"{INSTANCE}={self.engine},{COMPONENT} in ({','.join(self.roles)})"
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        wanted = {
            p.metadata.name: p
            for p in pods
            if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
        }
        counts = dict.fromkeys(self.roles, 0)
        for pod in wanted.values():
            counts[pod.metadata.labels[COMPONENT]] += 1
        with self._lock:
            self._pods = counts
            gone = [name for name in self._running if name not in wanted]
            stopping = [(name, self._running.pop(name)[1]) for name in gone]
        for name, process in stopping:
            self._terminate(name, process)
        for name, pod in wanted.items():
            if name not in self._running:
                self._run(name, pod)
        for role in self.roles:
            for process in self.processes(role):
                if process.url not in self._ready and _probe(process.url + "/health/ready"):
                    self._ready.add(process.url)
                    self.log.append(f"{self._now():6.1f} ready {role} on {process.url}")

    def _run(self, name: str, pod: Any) -> None:
        role = pod.metadata.labels[COMPONENT]
        container = pod.spec.containers[0]
        env = self._env(container)
        process = ServiceProcess(role, env, self.log_dir, name=name)
        process.start(wait=False)
        with self._lock:
            self._running[name] = (role, process)
        self.log.append(f"{self._now():6.1f} start {role} {name} on {process.url}")

    def _terminate(self, name: str, process: ServiceProcess) -> None:
        role = process.role
        self.log.append(f"{self._now():6.1f} stop {role} {name} (SIGTERM)")

        def stop() -> None:
            with suppress(ServiceError):
                process.stop(timeout_s=30)

        stopper = threading.Thread(target=stop, name=f"stop-{name}", daemon=True)
        stopper.start()
        self._stoppers.append(stopper)

    def _env(self, container: Any) -> dict[str, str]:
        """The container's environment as the kubelet would build it: ``envFrom`` first,
        then ``env`` (which wins), secrets and ConfigMaps read from the API."""
        env: dict[str, str] = {}
        for source in container.env_from or []:
            if source.config_map_ref is not None:
                data = self.core.read_namespaced_config_map(
                    source.config_map_ref.name, self.namespace
                ).data
                env.update(data or {})
        for var in container.env or []:
            if var.value is not None:
                env[var.name] = var.value
            elif var.value_from is not None and var.value_from.secret_key_ref is not None:
                ref = var.value_from.secret_key_ref
                env[var.name] = self._secret(ref.name, ref.key)
        return env

    def _secret(self, name: str, key: str) -> str:
        import base64

        data = self.core.read_namespaced_secret(name, self.namespace).data or {}
        return base64.b64decode(data[key]).decode()

    def _now(self) -> float:
        return time.monotonic() - self.started_at


def _probe(url: str) -> bool:
    """A readiness probe: 200 within half a second."""
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


class Timeline:
    """One row a second of ``columns`` (name -> a callable), sampled in a thread; a column
    that fails for a second shows ``?``."""

    def __init__(self, columns: dict[str, Callable[[], Any]], every_s: float = 1.0) -> None:
        self.columns = columns
        self.every_s = every_s
        self.rows: list[tuple[float, list[str]]] = []
        self.started_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="timeline", daemon=True)

    def start(self) -> Timeline:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            row = []
            for column in self.columns.values():
                try:
                    value = column()
                except Exception:
                    value = "?"
                row.append(f"{value:.6g}" if isinstance(value, float) else str(value))
            self.rows.append((time.monotonic() - self.started_at, row))
            self._stop.wait(self.every_s)

    def render(self, condensed: bool = False) -> str:
        """The table; ``condensed`` keeps the first and last rows and those that differ from
        the row before."""
        names = ["t_s", *self.columns]
        lines = ["  ".join(f"{n:>10}" for n in names)]
        previous: list[str] | None = None
        for index, (t, row) in enumerate(self.rows):
            last = index == len(self.rows) - 1
            if condensed and row == previous and not last:
                continue
            previous = row
            lines.append("  ".join(f"{v:>10}" for v in [f"{t:.0f}", *row]))
        return "\n".join(lines)
