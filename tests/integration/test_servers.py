"""The test servers are real: data goes through Kafka, Redis and PostgreSQL and back.

These also prove the restart paths (same ports, same data dir) that later tests of the engine
rely on when a dependency goes away in the middle of a stream.
"""

from __future__ import annotations

import socket
import time
import uuid

import psycopg
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer

from reco.local.servers import (
    KafkaServer,
    PostgresServer,
    RedisServer,
    ServerError,
)

pytestmark = pytest.mark.integration

CONSUME_TIMEOUT = 30.0


def _produce(kafka_server: KafkaServer, topic: str, key: bytes, value: bytes) -> None:
    producer = Producer(kafka_server.client_config({"acks": "all", "linger.ms": 0}))
    delivered: list[Message] = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda _, msg: delivered.append(msg))
    assert producer.flush(CONSUME_TIMEOUT) == 0
    assert delivered
    assert delivered[0].error() is None


def _consume_one(kafka_server: KafkaServer, topic: str, group_id: str) -> Message:
    consumer = Consumer(
        kafka_server.client_config(
            {
                "group.id": group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CONSUME_TIMEOUT
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            return msg
        raise AssertionError(f"no message on {topic} within {CONSUME_TIMEOUT}s")
    finally:
        consumer.close()


def test_kafka_produce_and_consume(
    kafka_server: KafkaServer, kafka_topic: str, kafka_group_id: str
) -> None:
    _produce(kafka_server, kafka_topic, b"user-1", b'{"item": "i-42"}')

    msg = _consume_one(kafka_server, kafka_topic, kafka_group_id)

    assert msg.topic() == kafka_topic
    assert msg.key() == b"user-1"
    assert msg.value() == b'{"item": "i-42"}'
    assert kafka_server.bootstrap.startswith("127.0.0.1:")


@pytest.mark.parametrize("kafka_topic", [3], indirect=True)
def test_kafka_topic_partitions(kafka_server: KafkaServer, kafka_topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(kafka_server.client_config()).list_topics(kafka_topic, timeout=10)

    assert len(metadata.topics[kafka_topic].partitions) == 3


def test_kafka_broker_killed_and_restarted_keeps_data_and_port(
    kafka_server: KafkaServer, kafka_topic: str, kafka_group_id: str
) -> None:
    bootstrap = kafka_server.bootstrap
    _produce(kafka_server, kafka_topic, b"k", b"before the crash")

    kafka_server.kill()
    assert not kafka_server.running
    kafka_server.start()

    assert kafka_server.bootstrap == bootstrap
    msg = _consume_one(kafka_server, kafka_topic, kafka_group_id)
    assert msg.value() == b"before the crash"


def test_redis_set_get(redis_client: redis.Redis) -> None:
    redis_client.set("reco:test", "value")

    assert redis_client.get("reco:test") == b"value"


def test_redis_restart_keeps_serving_on_same_port(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    url = redis_server.url
    redis_client.set("reco:volatile", "1")

    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, retry_on_error=[], socket_connect_timeout=1).ping()
    redis_server.start()

    assert redis_server.url == url
    assert redis_client.ping()
    assert redis_client.get("reco:volatile") is None, "persistence is off: a restart starts empty"
    redis_client.set("reco:after", "2")
    assert redis_client.get("reco:after") == b"2"

    redis_server.kill()
    redis_server.start()
    assert redis_client.ping()


def test_redis_fails_fast_with_its_log_when_the_port_is_taken() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = RedisServer()
        server.port = blocker.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ServerError, match=r"(?s)exited with code.*in use"):
            server.start()
        server.close()
    assert time.monotonic() - started < 10


def test_postgres_create_copy_select(pg_conn: psycopg.Connection) -> None:
    pg_conn.execute("CREATE TABLE interactions (user_id text, item_id text, weight real)")
    rows = [(f"u{i % 7}", f"i{i}", i / 10) for i in range(1000)]
    with pg_conn.cursor() as cur:
        with cur.copy("COPY interactions (user_id, item_id, weight) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            "SELECT count(*), count(DISTINCT user_id), round(sum(weight)) FROM interactions"
        )
        assert cur.fetchone() == (1000, 7, round(sum(r[2] for r in rows)))


def test_postgres_killed_and_restarted_keeps_committed_rows(
    postgres_server: PostgresServer,
) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        conn.execute(f"INSERT INTO {table} VALUES (1), (2), (3)")

    postgres_server.kill()
    postgres_server.start()

    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)
        conn.execute(f"DROP TABLE {table}")
    postgres_server.stop()
    postgres_server.start()
    assert postgres_server.url.startswith("postgresql://reco@127.0.0.1:")
