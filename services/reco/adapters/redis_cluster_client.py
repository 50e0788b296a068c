"""How the Redis Cluster store talks to its Cluster: clients from a ``redis+cluster://`` URL,
and pipelines that load the scripts where they are missing and wait for a replica.

redis-py's ``RedisCluster`` splits a pipeline per node (one round trip each, in parallel),
follows MOVED and ASK, and refreshes its slot map on the errors it meets. Two things it
leaves to the caller: a pipeline does not load a script a node lacks (a replica promoted
since the scripts were loaded answers NOSCRIPT), and WAIT, which counts the replicas holding
*this connection's* writes, must travel in the same pipeline as the writes it is about.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry

from reco.exceptions import BackendUnavailable, ConfigError

logger = logging.getLogger(__name__)

SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes naming a Cluster, and the scheme of each node's connections."""

_WARN_EVERY_S: Final = 60.0


def connect(
    url: str, *, socket_timeout_s: float, rescale_timeout_s: float, retries: int
) -> tuple[RedisCluster, RedisCluster]:
    """A client for every call (short timeouts, few quick retries, as the single store's)
    and one for the rare long ones (no retry: a retry sent while the first call still runs
    would only be answered BUSY). RESP2, replies decoded to ``str``."""
    nodes, options = parse_cluster_url(url)
    common: dict[str, Any] = {
        "startup_nodes": [ClusterNode(host, port) for host, port in nodes],
        "decode_responses": True,
        "protocol": 2,
        "socket_connect_timeout": socket_timeout_s,
        "client_name": "reco-features",
        # A slot map missing a dead master's slots is still a map: keys elsewhere work.
        "require_full_coverage": False,
        **options,
    }
    try:
        client = RedisCluster(
            socket_timeout=socket_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries),
            **common,
        )
        slow = RedisCluster(socket_timeout=rescale_timeout_s, retry=Retry(NoBackoff(), 0), **common)
    except (RedisClusterException, redis.RedisError) as exc:
        raise BackendUnavailable(f"feature store at {redacted_cluster_url(url)}: {exc}") from exc
    return client, slow


class ClusterPipelines:
    """The store's scripts and pipelines on one Cluster (see the module docstring)."""

    def __init__(
        self,
        client: RedisCluster,
        slow: RedisCluster,
        *,
        scripts: Mapping[str, str],
        where: str,
        replica_wait_ms: int,
    ) -> None:
        self.client = client
        self.slow = slow
        self._texts = dict(scripts)
        self.scripts: dict[str, Script] = {
            name: client.register_script(text) for name, text in scripts.items()
        }
        self._where = where
        self._wait_ms = replica_wait_ms
        self._unreplicated_at = -_WARN_EVERY_S

    def run(
        self,
        send: Callable[[ClusterPipeline], object],
        *,
        slow: bool = False,
        replicated: Iterable[str] = (),
        what: str = "",
    ) -> list[Any]:
        """Run the commands ``send`` queues in one pipeline and return their replies,
        raising the first error. A node without the scripts gets them, and the pipeline
        runs again: every write in it must be safe to run twice.

        With ``replicated`` keys, a ``WAIT 1`` follows the writes on each of their nodes
        (the writes ``what`` names): the reply comes once a replica holds them, or after
        ``replica_wait_ms``, which is logged. A WAIT fails no write: a node that turned
        replica since the slot map was read refuses it."""
        client = self.slow if slow else self.client
        nodes = {client.get_node_from_key(key) for key in replicated} if self._wait_ms else set()
        for attempt in (1, 2):
            with client.pipeline(transaction=False) as pipe:
                send(pipe)
                for node in nodes:
                    pipe.execute_command("WAIT", 1, self._wait_ms, target_nodes=node)
                replies = list(pipe.execute(raise_on_error=False))
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                for text in self._texts.values():
                    client.script_load(text)
                continue
            writes = replies[: len(replies) - len(nodes)]
            for reply in writes:
                if isinstance(reply, Exception):
                    raise reply
            self._check_acks(replies[len(writes) :], what)
            return writes
        raise AssertionError("unreachable")

    def _check_acks(self, acks: Sequence[Any], what: str) -> None:
        """Log (once a minute at most) writes no replica acknowledged in time."""
        if any(isinstance(n, Exception) or int(n) < 1 for n in acks):
            now = time.monotonic()
            if now - self._unreplicated_at >= _WARN_EVERY_S:
                self._unreplicated_at = now
                logger.warning(
                    "feature store %s: %s written without a replica's acknowledgement "
                    "within %d ms (a master without a replica, or one lagging): a failover "
                    "now could lose it",
                    self._where,
                    what,
                    self._wait_ms,
                )

    def close(self) -> None:
        self.client.close()
        if self.slow is not self.client:
            self.slow.close()


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The startup nodes and connection options of a ``redis+cluster://`` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(f"not a Redis Cluster URL: {redacted_cluster_url(url)}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    if path not in ("", "0"):
        raise ConfigError("a Redis Cluster has only database 0; drop the /<db> from the URL")
    if query:
        raise ConfigError("Redis Cluster URLs take no ?options")
    nodes, options = parse_hosts(netloc, what="Redis Cluster")
    if SCHEMES[scheme.lower()] == "rediss":
        options["ssl"] = True
    return nodes, options


def parse_hosts(netloc: str, *, what: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``[user:password@]host:port[,host:port...]``: the nodes, and the credentials as
    redis-py's ``username`` and ``password`` options (``what`` names the nodes in errors)."""
    userinfo, at, hosts = netloc.rpartition("@")
    options: dict[str, Any] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if colon:
            options["password"] = unquote(password)
    nodes = []
    for node in hosts.split(","):
        host, colon, port = node.strip().rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ConfigError(f"{what} node {node!r}: give each as host:port, comma-separated")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, options


def redacted_cluster_url(url: str) -> str:
    """``url`` without its password, fit for a log line or an error message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{hosts}"
