"""A Redis master with a replica, watched by three Sentinels, on loopback.

Like :class:`reco.local.servers.RedisServer`, nothing persists. A master killed is replaced
by its replica once the Sentinels agree it is down (``down_after_ms``, then an election);
started again it comes back empty, so it is started as the new master's replica (a master
without persistence must never come back as a master: its replicas would copy its empty
data set).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Self

import redis

from reco.local.exceptions import ServerError
from reco.local.servers import LOOPBACK, RedisServer, ServerGroup, free_ports

__all__ = ["RedisSentinelServer"]

logger = logging.getLogger(__name__)

SERVICE = "reco"
"""The name the Sentinels monitor the master under (the URL's ``/<service>``)."""


class _DataNode(RedisServer):
    """A master or replica; ``replica_of`` (a port) makes it start as that node's replica."""

    name = "redis-data"

    def __init__(self, *, port: int, base_dir: str | Path | None, start_timeout: float) -> None:
        super().__init__(base_dir=base_dir, start_timeout=start_timeout, port=port)
        self.replica_of: int | None = None

    def _command(self) -> list[str]:
        follow = ["--replicaof", LOOPBACK, str(self.replica_of)] if self.replica_of else []
        # A replica's first copy starts at once, not after Redis's 5 s wait for others.
        return [*super()._command(), "--repl-diskless-sync-delay", "0", *follow]

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, decode_responses=True, socket_timeout=2.0)

    def replication(self) -> dict[str, Any] | None:
        """``INFO replication`` of a running node; ``None`` when it does not answer."""
        if not self.running:
            return None
        try:
            with self.client() as client:
                return dict(client.info("replication"))
        except redis.RedisError:
            return None


class _Sentinel(RedisServer):
    """``redis-server <conf> --sentinel``; its config file, which Sentinel rewrites with what
    it learns, is written on the first start only and kept across restarts."""

    name = "redis-sentinel"

    def __init__(
        self,
        *,
        port: int,
        master_port: int,
        down_after_ms: int,
        base_dir: str | Path | None,
        start_timeout: float,
    ) -> None:
        super().__init__(base_dir=base_dir, start_timeout=start_timeout, port=port)
        self.master_port = master_port
        self.down_after_ms = down_after_ms

    @property
    def config_path(self) -> Path:
        return self.run_dir / "sentinel.conf"

    def _prepare(self) -> None:
        if self.config_path.exists():
            return
        self.config_path.write_text(
            f"port {self.port}\n"
            f"bind {LOOPBACK}\n"
            f"dir {self.run_dir}\n"
            f"sentinel monitor {SERVICE} {LOOPBACK} {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {max(3 * self.down_after_ms, 3000)}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )

    def _command(self) -> list[str]:
        return [*super()._command()[:1], str(self.config_path), "--sentinel"]

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, decode_responses=True, socket_timeout=2.0)

    def master_port_now(self) -> int | None:
        """The port of the master this Sentinel names now; ``None`` when it does not answer."""
        if not self.running:
            return None
        try:
            with self.client() as client:
                address = client.sentinel_get_master_addr_by_name(SERVICE)
        except redis.RedisError:
            return None
        return None if not address else int(address[1])

    def peers(self) -> tuple[int, int] | None:
        """(other Sentinels, replicas) this Sentinel knows of the master."""
        if not self.running:
            return None
        try:
            with self.client() as client:
                master = client.sentinel_master(SERVICE)
        except redis.RedisError:
            return None
        return int(master["num-other-sentinels"]), int(master["num-slaves"])


class RedisSentinelServer(ServerGroup):
    """A master, a replica and three Sentinels (quorum 2); ``.url`` is the engine's
    ``redis+sentinel://`` URL. Started once (``start``), it can lose its master
    (``kill_master``) and get it back (``restart``)."""

    name = "redis sentinel"

    def __init__(
        self,
        *,
        down_after_ms: int = 1000,
        base_dir: str | Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        ports = free_ports(5)  # picked together, so that no two are the same
        self.nodes = [
            _DataNode(port=port, base_dir=base_dir, start_timeout=start_timeout)
            for port in ports[:2]
        ]
        self.nodes[1].replica_of = self.nodes[0].port
        self.sentinels = [
            _Sentinel(
                port=port,
                master_port=self.nodes[0].port,
                down_after_ms=down_after_ms,
                base_dir=base_dir,
                start_timeout=start_timeout,
            )
            for port in ports[2:]
        ]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<port>,.../reco/0``: every Sentinel."""
        hosts = ",".join(f"{LOOPBACK}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    @property
    def address(self) -> str:
        return self.url

    def start(self) -> Self:
        """Start whatever is not running (a data node that is not the master as its
        replica); return once healthy."""
        started = time.monotonic()
        master = self._master_port()
        for node in self.nodes:
            if not node.running and master is not None and node.port != master:
                node.replica_of = master
            node.start()
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_healthy()
        if self.startup_seconds is None:
            self.startup_seconds = time.monotonic() - started
            logger.info("redis sentinel ready at %s in %.1fs", self.url, self.startup_seconds)
        return self

    def master(self) -> _DataNode:
        """The data node the Sentinels name as the master now."""
        port = self._master_port()
        node = next((n for n in self.nodes if n.port == port), None)
        if node is None:
            raise ServerError(f"no Sentinel names a master:\n{self._describe()}")
        return node

    def healthy(self) -> bool:
        """Every Sentinel names the same running master, knows the two other Sentinels and
        its replica; the master streams its writes to the replica (``online``)."""
        ports = {s.master_port_now() for s in self.sentinels}
        if len(ports) != 1 or None in ports:
            return False
        if any(s.peers() != (len(self.sentinels) - 1, 1) for s in self.sentinels):
            return False
        (port,) = ports
        for node in self.nodes:
            info = node.replication()
            if info is None:
                return False
            if node.port == port:
                online = [
                    line
                    for key, line in info.items()
                    if key.startswith("slave") and isinstance(line, dict)
                    if line.get("state") == "online"
                ]
                if info["role"] != "master" or len(online) != 1:
                    return False
            elif info["role"] != "slave" or info.get("master_link_status") != "up":
                return False
        return True

    def wait_healthy(self, timeout_s: float | None = None) -> None:
        """Wait until :meth:`healthy` and the replica acknowledges a write at once (its first
        acknowledgement after a full copy can take up to a second)."""
        self._wait(self.healthy, "healthy (one master, its replica in sync)", timeout_s)
        self._wait(self._acknowledged, "acknowledging writes", timeout_s)

    def _acknowledged(self) -> bool:
        with self.master().client() as client:
            client.set("reco-probe", "1")
            acked = int(client.execute_command("WAIT", 1, 500))
            client.delete("reco-probe")
        return acked >= 1

    def kill_master(self) -> _DataNode:
        """SIGKILL the master; return the replica once the Sentinels promoted it."""
        victim = self.master()
        victim.kill()

        def promoted() -> bool:
            ports = {s.master_port_now() for s in self.sentinels if s.running}
            if ports == {victim.port} or len(ports) != 1:
                return False
            info = self.master().replication()
            return info is not None and info["role"] == "master"

        self._wait(promoted, f"failed over from {LOOPBACK}:{victim.port}", None)
        return self.master()

    def restart(self) -> None:
        """Start a killed data node again as the master's replica; return once healthy."""
        self.start()

    def flush(self) -> None:
        """Delete every key (the replica follows)."""
        with self.master().client() as client:
            client.flushall()

    def _master_port(self) -> int | None:
        for sentinel in self.sentinels:
            port = sentinel.master_port_now()
            if port is not None:
                return port
        return None

    def _describe(self) -> str:
        lines = []
        for node in self.nodes:
            info = node.replication() or {}
            lines.append(
                f"  data {LOOPBACK}:{node.port} running={node.running} role={info.get('role')} "
                f"link={info.get('master_link_status', '-')}"
            )
        for sentinel in self.sentinels:
            lines.append(
                f"  sentinel {LOOPBACK}:{sentinel.port} running={sentinel.running} "
                f"master={sentinel.master_port_now()} peers={sentinel.peers()}"
            )
        return "\n".join(lines)

    def servers(self) -> list[RedisServer]:
        return [*self.sentinels, *self.nodes]
