"""The services of the production shape as real processes (``python -m reco.cli ROLE``),
configured by ``RECO_*`` variables against real Kafka, Redis and PostgreSQL servers.

:class:`Stack` runs them against servers it is given (the integration tests' own, on free
ports); :func:`local_stack` starts the servers too (``make run-stack``, the benchmarks).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from reco.local.exceptions import ServiceError
from reco.local.redis_cluster import RedisClusterServer
from reco.local.servers import LOOPBACK, KafkaServer, PostgresServer, RedisServer, free_port

__all__ = ["README_PORTS", "ROLES", "ServiceProcess", "Stack", "local_stack", "post_events"]

ROLES = ("ingest", "processor", "archiver", "api")
# The ports the README's table gives each role (and each role's settings default to), so
# that its curl lines and Prometheus targets work against ``make run-stack`` as written.
README_PORTS = {"api": 8080, "ingest": 8081, "processor": 8082, "archiver": 8083}


class ServiceProcess:
    """One role as a child process, logging to ``<log_dir>/<role>.log``; on a free port
    unless ``port`` is given."""

    def __init__(
        self,
        role: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        port: int | None = None,
        name: str | None = None,
    ) -> None:
        """``name`` (default: the role) names the log file, for two processes of a role."""
        self.role = role
        self.port = free_port() if port is None else port
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.env = {**os.environ, **env, "RECO_PORT": str(self.port), "RECO_HOST": LOOPBACK}
        self.log_path = log_dir / f"{name or role}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> ServiceProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts} ---\n".encode())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reco.cli", "--log-level", "info", self.role],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        if self.proc is None:
            raise ServiceError(f"{self.role} was never started")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.role} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ServiceError(f"{self.role} not ready in {timeout_s} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye to the consumer group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait: the graceful path (drain, commit, leave the group)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise ServiceError(f"{self.role} ignored SIGTERM for {timeout_s} s") from None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(self.samples(name, **labels))

    def samples(self, name: str, **labels: str) -> list[float]:
        """The values of the samples of ``name`` whose labels include ``labels``."""
        values = []
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                values.append(float(value))
        return values

    def caught_up(self, partitions: int) -> bool:
        """The consumer group's lag is known for every partition, and zero."""
        lags = self.samples("consumer_lag_records")
        return len(lags) == partitions and not any(lags)

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    """ingest, processor, archiver and api over one topic, Redis prefix and database."""

    def __init__(
        self, env: Mapping[str, str], log_dir: Path, *, ports: Mapping[str, int] | None = None
    ) -> None:
        """``ports`` fixes some roles' ports; the others get free ones."""
        self.env = dict(env)
        ports = ports or {}
        unknown = set(ports) - set(ROLES)
        if unknown:
            raise ValueError(f"ports for unknown roles {sorted(unknown)}; the roles are {ROLES}")
        self.services = {
            role: ServiceProcess(role, self.env, log_dir, port=ports.get(role)) for role in ROLES
        }
        self.redis: RedisServer | RedisClusterServer | None = None
        """The Redis the stack runs on, when :func:`local_stack` started it."""

    def __getitem__(self, role: str) -> ServiceProcess:
        return self.services[role]

    def start(self, *roles: str) -> Stack:
        for role in roles or ROLES:
            self.services[role].start(wait=False)
        for role in roles or ROLES:
            self.services[role].wait_ready()
        return self

    def stop(self) -> None:
        for service in self.services.values():
            with contextlib.suppress(ServiceError):
                service.stop()

    def logs(self) -> str:
        return "\n".join(f"== {r}\n{s.tail()}" for r, s in self.services.items())

    def group_assignment(self, group: str = "reco-processor") -> list[set[int]]:
        """The partitions each member of the processors' consumer group holds, asked of the
        broker (members without partitions included); empty while the group is not stable."""
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.env["RECO_KAFKA_BOOTSTRAP"]})
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(30)
        if described.state is not ConsumerGroupState.STABLE:
            return []
        return [
            {tp.partition for tp in member.assignment.topic_partitions}
            for member in described.members
        ]


def post_events(url: str, events: list[dict[str, Any]], *, batch: int = 1000) -> int:
    """Send ``events`` in batches, retrying a batch answered 503 (what a client must do)."""
    accepted = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            for _attempt in range(120):
                try:
                    r = http.post("/events", json=chunk)
                except httpx.TransportError:
                    time.sleep(0.5)
                    continue
                if r.status_code == 503:
                    time.sleep(float(r.headers.get("retry-after", "1")))
                    continue
                r.raise_for_status()
                accepted += r.json()["accepted"]
                break
            else:
                raise ServiceError(f"{url}: batch at {start} never accepted")
    return accepted


@contextmanager
def local_stack(
    log_dir: Path,
    *,
    ports: Mapping[str, int] | None = None,
    env: Mapping[str, str] | None = None,
    partitions: int = 4,
    redis_cluster: bool = False,
) -> Iterator[Stack]:
    """Kafka, Redis and PostgreSQL on free ports, then the four services against them;
    everything is stopped and its data removed on exit (``make run-stack``, benchmarks).
    ``redis_cluster``: a Redis Cluster of 3 masters with a replica each instead of one
    Redis (``stack.redis`` is the server either way).

    The services get the ``ports`` given per role (``make run-stack`` passes
    :data:`README_PORTS`) and free ports otherwise, so a benchmark does not collide with an
    engine already running on the usual ones."""
    redis_server: RedisServer | RedisClusterServer = (
        RedisClusterServer() if redis_cluster else RedisServer()
    )
    with KafkaServer() as kafka, redis_server, PostgresServer() as postgres:
        stack_env = {
            "RECO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "RECO_TOPIC_PARTITIONS": str(partitions),
            "RECO_REDIS_URL": redis_server.url,
            "RECO_DATABASE_URL": postgres.url,
            **(env or {}),
        }
        stack = Stack(stack_env, log_dir, ports=ports)
        stack.redis = redis_server
        try:
            yield stack.start()
        finally:
            stack.stop()
