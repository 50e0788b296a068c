"""Kafka topics and what every Kafka client of the engine shares (confluent-kafka).

The event log on Kafka is three modules: this one (topic creation, connection settings),
``kafka_producer`` (ingest's producer) and ``kafka_consumer`` (the processor's and the
archiver's group consumer). Only these modules import ``confluent_kafka`` (import-linter
contract ``backends``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import (
    KafkaError,
    KafkaException,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # admin re-exports it, but not for mypy

from reco.exceptions import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

DEAD_LETTER_SUFFIX = ".dlq"


# Client settings that every client of one cluster shares (where and how to connect), as
# opposed to producer- or consumer-only tuning. The dead-letter producer and the admin client
# of a consumer take these from the consumer's ``config`` so one set of credentials suffices.
_CONNECTION_PREFIXES = ("bootstrap.", "security.", "sasl.", "ssl.", "socket.", "broker.")


# Topic creation errors a person must fix (not a passing outage).
_BAD_TOPIC_REQUEST = frozenset(
    {
        KafkaError.INVALID_PARTITIONS,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError.INVALID_CONFIG,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


def connection_settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (config or {}).items() if k.startswith(_CONNECTION_PREFIXES)}


def error_of(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    replication: int = 1,
    config: Mapping[str, str] | None = None,
    *,
    client_config: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> int:
    """Create ``topic`` unless it exists; return how many partitions it has.

    Idempotent: an existing topic is fine. One with fewer partitions than asked is left as
    it is, with a warning: adding partitions moves keys to other partitions (a user's events
    would no longer be in order), so it is an operator's decision, not a side effect of a
    start. ``replication=-1`` takes the broker's ``default.replication.factor``.
    ``client_config`` carries connection settings (security) for the admin client.

    Raises ``ConfigError`` when the cluster refuses the request (bad replication factor,
    policy, authorization) and ``BackendUnavailable`` when it cannot be reached.
    """
    settings: dict[str, Any] = {
        **connection_settings(client_config),
        "bootstrap.servers": bootstrap,
        "logger": log,
    }
    admin = AdminClient(settings)
    new_topic = NewTopic(
        topic, num_partitions=partitions, replication_factor=replication, config=dict(config or {})
    )
    futures = admin.create_topics(
        [new_topic], operation_timeout=timeout_s, request_timeout=timeout_s
    )
    created = True
    try:
        futures[topic].result(timeout=timeout_s + 5)
    except KafkaException as exc:
        error = error_of(exc)
        if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            if error is not None and error.code() in _BAD_TOPIC_REQUEST:
                raise ConfigError(f"cannot create topic {topic}: {error.str()}") from exc
            raise BackendUnavailable(f"cannot create topic {topic} at {bootstrap}: {exc}") from exc
        created = False
    except concurrent.futures.TimeoutError as exc:
        raise BackendUnavailable(
            f"creating topic {topic} at {bootstrap} took over {timeout_s:.0f} s"
        ) from exc

    actual = _wait_for_leaders(admin, topic, partitions if created else None, timeout_s)
    if created:
        log.info("created topic %s: %d partitions, replication %d", topic, actual, replication)
    elif actual < partitions:
        log.warning(
            "topic %s has %d partitions, fewer than the %d asked for: at most %d consumers of "
            "a group get records; add partitions with kafka-topics --alter --partitions %d "
            "if that is meant (it moves keys, so one user's events lose their order once)",
            topic,
            actual,
            partitions,
            actual,
            partitions,
        )
    else:
        log.debug("topic %s exists with %d partitions", topic, actual)
    return actual


def _wait_for_leaders(
    admin: AdminClient, topic: str, expected: int | None, timeout_s: float
) -> int:
    """Metadata trails topic creation: producing before each partition has a leader fails."""
    deadline = time.monotonic() + timeout_s
    last = "no metadata"
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(topic=topic, timeout=min(5.0, timeout_s)).topics.get(topic)
        except KafkaException as exc:
            last = str(exc)
        else:
            if metadata is None or metadata.error is not None:
                last = str(metadata.error if metadata is not None else "topic not listed")
            elif (
                metadata.partitions
                and (expected is None or len(metadata.partitions) == expected)
                and all(p.leader >= 0 for p in metadata.partitions.values())
            ):
                return len(metadata.partitions)
            else:
                last = f"{len(metadata.partitions)} partitions, not all with a leader"
        time.sleep(0.05)
    raise BackendUnavailable(f"topic {topic} not ready within {timeout_s:.0f} s: {last}")
