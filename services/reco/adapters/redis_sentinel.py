"""Clients of a Redis that Sentinel watches, from a ``redis+sentinel://`` URL.

``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]`` names the
Sentinels (any reachable one answers; list them all) and the name they monitor the master
under; ``rediss+sentinel://`` speaks TLS to the data nodes. The user and password are the
data nodes'; Sentinels that require their own give them as ``?sentinel_username=`` and
``?sentinel_password=``.

redis-py's ``Sentinel`` asks the Sentinels for the master's address whenever it opens a
connection and drops the connections of a master that stopped being one, so after a
failover the store's next call reaches the promoted replica. The feature store itself is
the single-Redis one (:class:`reco.adapters.redis_features.RedisFeatureStore`): a batch is
one script, which Redis replicates as a unit, so a replica holds a prefix of the batches,
offsets included. A promoted replica that missed the last batches is *behind* the
processor, which the apply's compare-and-set on the offsets notices (``RESET``): the
processor goes back to the offsets the store holds and reads those records again from
Kafka, so a failover loses nothing acknowledged and counts nothing twice.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from reco.adapters.redis_cluster_client import parse_hosts, redacted_cluster_url
from reco.exceptions import ConfigError

SCHEMES: Final = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
"""URL schemes naming a Sentinel-watched Redis, and the scheme of the data connections."""

_SENTINEL_OPTIONS: Final = ("sentinel_username", "sentinel_password")


def parse_sentinel_url(
    url: str,
) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """The Sentinels, the service name, the data nodes' connection options (``db``,
    credentials, TLS) and the Sentinels' own credentials, from a ``redis+sentinel://`` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(f"not a Redis Sentinel URL: {redacted_url(url)}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ConfigError(
            f"{redacted_url(url)}: name the master the Sentinels monitor, "
            "redis+sentinel://host:port[,host:port...]/<service>[/<db>]"
        )
    if db and not db.isdigit():
        raise ConfigError(f"{redacted_url(url)}: the database after the service is a number")
    sentinels, options = parse_hosts(netloc, what="Redis Sentinel")
    options["db"] = int(db or 0)
    if SCHEMES[scheme.lower()] == "rediss":
        options["ssl"] = True
    sentinel_options: dict[str, Any] = {}
    for key, values in parse_qs(query, keep_blank_values=True, strict_parsing=False).items():
        if key not in _SENTINEL_OPTIONS:
            raise ConfigError(
                f"{redacted_url(url)}: unknown option {key!r}; "
                f"a Sentinel URL takes {', '.join(_SENTINEL_OPTIONS)}"
            )
        sentinel_options[key.removeprefix("sentinel_")] = values[-1]
    return sentinels, service, options, sentinel_options


def connect(
    url: str, *, socket_timeout_s: float, rescale_timeout_s: float, retries: int
) -> tuple[redis.Redis, redis.Redis]:
    """Clients of the current master, set up as the single store's (``from_url``): one for
    every call, one with a long timeout and no retry for the rescale."""
    sentinels, service, options, sentinel_options = parse_sentinel_url(url)
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={
            "socket_timeout": socket_timeout_s,
            "socket_connect_timeout": socket_timeout_s,
            **sentinel_options,
        },
        decode_responses=True,
        protocol=2,
        socket_connect_timeout=socket_timeout_s,
        client_name="reco-features",
        **options,
    )
    client = sentinel.master_for(
        service,
        socket_timeout=socket_timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries),
    )
    slow = sentinel.master_for(
        service, socket_timeout=rescale_timeout_s, retry=Retry(NoBackoff(), 0)
    )
    return client, slow


def redacted_url(url: str) -> str:
    """``url`` without its passwords, fit for a log line or an error message."""
    base, sep, query = redacted_cluster_url(url).partition("?")
    if not sep:
        return base
    fields = [
        f"{key}=***" if key == "sentinel_password" else f"{key}={value}"
        for key, _, value in (field.partition("=") for field in query.split("&"))
    ]
    return f"{base}?{'&'.join(fields)}"
