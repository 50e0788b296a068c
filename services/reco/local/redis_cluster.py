"""A real Redis Cluster on loopback: masters with their replicas, each a ``redis-server``
in cluster mode on free ports, joined by ``redis-cli --cluster create``.

Like :class:`reco.local.servers.RedisServer`, nothing persists: a node killed and started
again comes back empty and, as its ``nodes.conf`` is kept, rejoins the cluster. A master
killed is replaced by its replica (after ``node_timeout_ms`` and an election); started
again, it rejoins as the new master's replica and copies its data.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Self

import redis
from redis.cluster import ClusterNode

from reco.local.exceptions import ServerError
from reco.local.servers import (
    LOOPBACK,
    RedisServer,
    ServerGroup,
    free_ports,
    redis_cli_binary,
)

__all__ = ["RedisClusterNode", "RedisClusterServer"]

logger = logging.getLogger(__name__)

SLOTS = 16384


class RedisClusterNode(RedisServer):
    """One ``redis-server --cluster-enabled yes`` with its cluster bus on a port of its own
    (Redis's default, port + 10000, may be taken or out of range)."""

    name = "redis-node"

    def __init__(
        self,
        *,
        port: int,
        bus_port: int,
        node_timeout_ms: int,
        base_dir: str | Path | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__(base_dir=base_dir, start_timeout=start_timeout, port=port)
        self.bus_port = bus_port
        self.node_timeout_ms = node_timeout_ms

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _command(self) -> list[str]:
        return [
            *super()._command(),
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),
            "--cluster-config-file", str(self.run_dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # Fail over whatever the replica's last contact with its master: the suite kills
            # masters on purpose and wants the replica promoted every time.
            "--cluster-replica-validity-factor", "0",
            # A replica's first copy starts at once instead of after Redis's 5 s wait for
            # other replicas to share it.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def client(self, *, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK,
            port=self.port,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    def info(self, section: str) -> dict[str, Any] | None:
        """``INFO <section>`` of a running node; ``None`` when it does not answer."""
        if not self.running:
            return None
        try:
            with self.client() as client:
                return dict(client.info(section))
        except redis.RedisError:
            return None

    def cluster_info(self) -> dict[str, str] | None:
        if not self.running:
            return None
        try:
            with self.client() as client:
                info = client.execute_command("CLUSTER INFO")  # parsed into a dict
        except redis.RedisError:
            return None
        return {str(key): str(value) for key, value in dict(info).items()}


class RedisClusterServer(ServerGroup):
    """``masters`` masters with ``replicas`` replicas each; ``.url`` names every node as
    the engine's ``redis+cluster://`` URL does. Started once (``start``), it can lose a
    master (``kill_master``) and get it back (``restart``); ``wait_healthy`` says when every
    node agrees that all slots are served and every replica copies its master."""

    name = "redis cluster"

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1500,
        base_dir: str | Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        super().__init__(start_timeout=start_timeout)
        self.masters_wanted = masters
        self.replicas_wanted = replicas
        count = masters * (1 + replicas)
        ports = free_ports(2 * count)  # picked together, so that no two are the same
        self.nodes = [
            RedisClusterNode(
                port=ports[2 * n],
                bus_port=ports[2 * n + 1],
                node_timeout_ms=node_timeout_ms,
                base_dir=base_dir,
                start_timeout=start_timeout,
            )
            for n in range(count)
        ]
        self._created = False

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<port>,127.0.0.1:<port>,...``: every node, so that a
        client can bootstrap while any of them is down."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    @property
    def address(self) -> str:
        return self.url

    def start(self) -> Self:
        """Start every node that is not running; create the cluster on the first start;
        return once it is healthy."""
        started = time.monotonic()
        for node in self.nodes:
            node.start()
        if not self._created:
            self._create()
            self._created = True
        self.wait_healthy()
        if self.startup_seconds is None:
            self.startup_seconds = time.monotonic() - started
            logger.info("redis cluster ready at %s in %.1fs", self.url, self.startup_seconds)
        return self

    def _create(self) -> None:
        command = [
            redis_cli_binary(),
            "--cluster", "create",
            *(node.address for node in self.nodes),
            "--cluster-replicas", str(self.replicas_wanted),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=self.start_timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"redis-cli --cluster create failed: {exc}") from exc
        if result.returncode != 0:
            raise ServerError(
                f"redis-cli --cluster create failed (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-2000:]}"
            )

    def healthy(self) -> bool:
        """Every node runs and says ``cluster_state:ok`` with all slots served; there are
        ``masters`` masters, each with ``replicas`` replicas that the master streams its
        writes to (``state=online``: after a full copy, a master holds a replica's stream
        back until the replica's first acknowledgement, up to a second, and WAIT does not
        count it meanwhile)."""
        masters = 0
        for node in self.nodes:
            state = node.cluster_info()
            replication = node.info("replication")
            if state is None or replication is None:
                return False
            if state.get("cluster_state") != "ok" or state.get("cluster_slots_ok") != str(SLOTS):
                return False
            if replication["role"] == "master":
                masters += 1
                online = [
                    line
                    for key, line in replication.items()
                    if key.startswith("slave") and isinstance(line, dict)
                    if line.get("state") == "online"
                ]
                if len(online) != self.replicas_wanted:
                    return False
            elif replication.get("master_link_status") != "up" or replication.get(
                "master_sync_in_progress", 0
            ):
                return False
        return masters == self.masters_wanted

    def wait_healthy(self, timeout_s: float | None = None) -> None:
        """Wait until :meth:`healthy`, and until each master's replica acknowledges a write
        at once: the first acknowledgement after a full copy can take up to a second, and a
        test must not kill a master whose writes the replica has not confirmed."""
        self._wait(self.healthy, "healthy (all slots ok, every replica in sync)", timeout_s)
        for master in self.masters():
            self._wait(partial(self._acknowledged, master), "acknowledging writes", timeout_s)

    def _acknowledged(self, master: RedisClusterNode) -> bool:
        """A write to ``master`` (a probe key of its own slots) reaches its replicas within
        0.5 s."""
        with master.client() as client:
            ranges = client.execute_command("CLUSTER SLOTS")
            own = [(int(a), int(b)) for a, b, node, *_ in ranges if int(node[1]) == master.port]
            probe = next(
                f"reco-probe-{n}"
                for n in range(100_000)
                if any(a <= client.cluster("keyslot", f"reco-probe-{n}") <= b for a, b in own)
            )
            client.set(probe, "1")
            acked = int(client.execute_command("WAIT", self.replicas_wanted, 500))
            client.delete(probe)
        return acked >= self.replicas_wanted

    def client(self) -> redis.RedisCluster:
        """A cluster client on every node, decoding replies to ``str``."""
        return redis.RedisCluster(
            startup_nodes=[ClusterNode(LOOPBACK, node.port) for node in self.nodes if node.running],
            decode_responses=True,
        )

    def masters(self) -> list[RedisClusterNode]:
        """The running nodes that are masters now."""
        return [n for n in self.nodes if (i := n.info("replication")) and i["role"] == "master"]

    def master_of(self, slot: int) -> RedisClusterNode:
        """The node serving ``slot`` now, as the running nodes' slot map says."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                with node.client() as client:
                    ranges = client.execute_command("CLUSTER SLOTS")
            except redis.RedisError:
                continue
            for first, last, master, *_ in ranges:
                if int(first) <= slot <= int(last):
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise ServerError(f"no running node knows who serves slot {slot}")

    def kill_master(self, node: RedisClusterNode) -> RedisClusterNode:
        """SIGKILL ``node`` (a master), wait until one of its replicas took its slots over
        and the cluster serves every slot again; return that replica."""
        with node.client() as client:
            if client.info("replication")["role"] != "master":
                raise ServerError(f"{node.address} is not a master")
            replicas = [
                self._node_at(int(str(line["port"])))
                for key, line in client.info("replication").items()
                if key.startswith("slave") and isinstance(line, dict)
            ]
        node.kill()

        def promoted() -> RedisClusterNode | None:
            for replica in replicas:
                info = replica.info("replication")
                if info is not None and info["role"] == "master":
                    return replica
            return None

        self._wait(promoted, f"a replica of {node.address} promoted", None)
        self._wait(self._serving, "every slot served again", None)
        replica = promoted()
        assert replica is not None
        return replica

    def restart(self, node: RedisClusterNode) -> None:
        """Start a killed node again; it rejoins as a replica. Returns once all is healthy."""
        node.start()
        self.wait_healthy()

    def flush(self) -> None:
        """Delete every key on every master (replicas follow)."""
        for node in self.masters():
            with node.client() as client:
                client.flushall()

    def _serving(self) -> bool:
        """Every running node says ``cluster_state:ok``."""
        running = [n for n in self.nodes if n.running]
        states = [n.cluster_info() for n in running]
        return all(s is not None and s.get("cluster_state") == "ok" for s in states)

    def _node_at(self, port: int) -> RedisClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def _describe(self) -> str:
        lines = []
        for node in self.nodes:
            replication = node.info("replication") or {}
            state = node.cluster_info() or {}
            lines.append(
                f"  {node.address} running={node.running} role={replication.get('role')} "
                f"link={replication.get('master_link_status', '-')} "
                f"state={state.get('cluster_state')} slots_ok={state.get('cluster_slots_ok')}"
            )
        return "\n".join(lines)

    def servers(self) -> list[RedisServer]:
        return list(self.nodes)

    def __iter__(self) -> Iterator[RedisClusterNode]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        return f"<RedisClusterServer {self.url}>"
