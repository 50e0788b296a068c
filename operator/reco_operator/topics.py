"""The event topic on the RecoEngine's Kafka: created with the spec's partitions, raised
when the spec raises them, never lowered (Kafka cannot take partitions away: keys would
move between partitions and lose their order).

The operator talks to Kafka itself, with the credentials the spec's Secrets hold (PEM
contents for TLS, so nothing is written to disk), before any role starts: a role that
started against a missing topic would crash-loop, and one that created it would get the
broker's default partition count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions, NewTopic  # admin re-exports them, not for mypy

from reco_operator.spec import KafkaSpec

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


class KafkaUnreachable(RuntimeError):
    """The brokers did not answer (or refused the credentials): try again later."""


class TopicRefused(RuntimeError):
    """The cluster will not do what the spec asks (replication above the brokers, a
    policy, missing rights): a person must change the spec or the cluster."""


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool = False
    raised_from: int | None = None
    wanted: int | None = None
    """The spec's partitions when the topic has more (the spec asked to shrink it)."""


def client_config(kafka: KafkaSpec, secrets: dict[str, dict[str, str]]) -> dict[str, Any]:
    """librdkafka settings for the spec's cluster, its credentials from ``secrets``."""
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol.lower(),
        "socket.timeout.ms": int(TIMEOUT_S * 1000),
        "client.id": "reco-operator",
    }
    if kafka.sasl is not None:
        credentials = secrets.get(kafka.sasl.secret_name, {})
        config["sasl.mechanism"] = kafka.sasl.mechanism
        config["sasl.username"] = credentials.get(kafka.sasl.username_key, "")
        config["sasl.password"] = credentials.get(kafka.sasl.password_key, "")
    if kafka.tls is not None:
        files = secrets.get(kafka.tls.secret_name, {})
        config["ssl.ca.pem"] = files.get(kafka.tls.ca_key, "")
        if kafka.tls.certificate_key and kafka.tls.key_key:
            config["ssl.certificate.pem"] = files.get(kafka.tls.certificate_key, "")
            config["ssl.key.pem"] = files.get(kafka.tls.key_key, "")
    return config


def ensure_topic(kafka: KafkaSpec, secrets: dict[str, dict[str, str]]) -> TopicState:
    admin = AdminClient(client_config(kafka, secrets))
    current = _partitions(admin, kafka)
    if current is None:
        _create(admin, kafka)
        log.info("created topic %s with %d partitions", kafka.topic, kafka.partitions)
        return TopicState(kafka.topic, kafka.partitions, created=True)
    if current < kafka.partitions:
        _raise(admin, kafka, current)
        log.info("topic %s: %d partitions, raised to %d", kafka.topic, current, kafka.partitions)
        return TopicState(kafka.topic, kafka.partitions, raised_from=current)
    if current > kafka.partitions:
        return TopicState(kafka.topic, current, wanted=kafka.partitions)
    return TopicState(kafka.topic, current)


def _partitions(admin: AdminClient, kafka: KafkaSpec) -> int | None:
    try:
        metadata = admin.list_topics(kafka.topic, timeout=TIMEOUT_S)
    except KafkaException as exc:
        where = kafka.bootstrap_servers
        raise KafkaUnreachable(f"Kafka at {where} did not answer: {exc}") from None
    if not metadata.brokers:
        raise KafkaUnreachable(f"Kafka at {kafka.bootstrap_servers} lists no brokers")
    topic = metadata.topics.get(kafka.topic)
    unknown = (
        topic is not None
        and topic.error is not None
        and (topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART)
    )
    if topic is None or unknown:
        return None
    if topic.error is not None:
        raise KafkaUnreachable(f"topic {kafka.topic}: {topic.error}")
    return len(topic.partitions)


def _create(admin: AdminClient, kafka: KafkaSpec) -> None:
    new = NewTopic(kafka.topic, kafka.partitions, kafka.replication_factor)
    _wait(admin.create_topics([new], request_timeout=TIMEOUT_S)[kafka.topic], kafka, "creating")


def _raise(admin: AdminClient, kafka: KafkaSpec, current: int) -> None:
    more = NewPartitions(kafka.topic, kafka.partitions)
    futures = admin.create_partitions([more], request_timeout=TIMEOUT_S)
    _wait(futures[kafka.topic], kafka, f"raising from {current} partitions")


def _wait(future: Any, kafka: KafkaSpec, doing: str) -> None:
    try:
        future.result(timeout=TIMEOUT_S * 2)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        code = error.code() if isinstance(error, KafkaError) else None
        if code == KafkaError.TOPIC_ALREADY_EXISTS:
            return  # another operator replica or a person was faster: fine
        if code in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT):
            raise KafkaUnreachable(f"{doing} topic {kafka.topic}: {exc}") from None
        raise TopicRefused(f"{doing} topic {kafka.topic}: {exc}") from None
    except TimeoutError:
        raise KafkaUnreachable(f"{doing} topic {kafka.topic}: no answer in time") from None
