"""The images in images/, built from their Dockerfiles with podman and started for real.

There is no Docker engine on the machines that run the suite; Debian's podman builds the
same Dockerfiles (over a Debian-built stand-in for the official python base image, which
cannot be pulled here: tests/support/podman.py) and runs them on the host's network. Where
podman cannot run, every test here is skipped with the reason.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reco.adapters.kafka_producer import KafkaProducer
from reco.adapters.postgres_archive import PostgresArchive
from reco.events import Event
from reco.local.servers import KafkaServer, RedisServer
from reco.ports import Record
from tests.conftest import free_port, wait_until
from tests.support.podman import Podman
from tests.support.shops import ring_walks

pytestmark = pytest.mark.images

UID = "10001"
ENGINE_PORTS = {"8080/tcp", "8081/tcp", "8082/tcp", "8083/tcp"}
# Only /tmp is writable, as under Kubernetes' readOnlyRootFilesystem with an emptyDir.
READ_ONLY = ("--read-only", "--tmpfs", "/tmp")


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None


def _ready(podman: Podman, cid: str, base: str) -> Callable[[], bool]:
    def check() -> bool:
        if not podman.running(cid):
            raise AssertionError(f"the container exited:\n{podman.logs(cid)}")
        response = _get(f"{base}/health/ready")
        return response is not None and response.status_code == 200

    return check


def _sample(base: str, name: str) -> float:
    """The value of one unlabelled sample on the role's /metrics, read with Prometheus's
    own text parser."""
    text = httpx.get(f"{base}/metrics", timeout=2.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} is not on {base}/metrics")


def _config(podman: Podman, image: str) -> dict[str, Any]:
    inspected = podman.inspect_image(image)
    config: dict[str, Any] = inspected["Config"]
    # podman reports the HEALTHCHECK beside the OCI config, which has no field for it.
    config["Healthcheck"] = inspected.get("Healthcheck")
    return config


def test_engine_image_runs_as_a_non_root_user_with_the_role_as_command(
    podman: Podman, engine_image: str
) -> None:
    config = _config(podman, engine_image)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["reco"]
    assert config["Cmd"] == ["api"]
    assert set(config["ExposedPorts"]) == ENGINE_PORTS
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "/opt/reco/healthcheck.py"]
    assert config["Labels"]["org.opencontainers.image.title"] == "reco-engine"

    ids = podman.run("run", "--rm", "--entrypoint", "id", engine_image).stdout.split()
    assert ids[:2] == [f"uid={UID}(reco)", f"gid={UID}(reco)"]
    version = podman.run("run", "--rm", *READ_ONLY, engine_image, "--version").stdout
    assert version.startswith("reco-engine ")


def test_dev_mode_serves_events_and_recommendations_on_a_read_only_root(
    podman: Podman, engine_image: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = ("--env", "RECO_HOST=127.0.0.1", "--env", f"RECO_PORT={port}")
    with podman.container(engine_image, "dev", options=(*READ_ONLY, *env)) as cid:
        wait_until(_ready(podman, cid, base), timeout_s=60, every_s=0.25)

        views = [("a", "boots"), ("a", "socks"), ("b", "boots"), ("b", "socks"), ("c", "boots")]
        events = [{"user_id": u, "item_id": i, "type": "view"} for u, i in views]
        posted = httpx.post(f"{base}/events", json=events, timeout=5.0)
        assert posted.status_code == 202, posted.text
        assert posted.json()["accepted"] == len(events)

        def personal() -> dict[str, Any] | None:
            body: dict[str, Any] = httpx.get(
                f"{base}/recommendations", params={"user_id": "c"}, timeout=5.0
            ).json()
            return body if body["personalised"] else None

        body = wait_until(personal, timeout_s=10, every_s=0.1)
        assert [i["item_id"] for i in body["items"]][:1] == ["socks"]
        assert "viewed together with boots" in body["items"][0]["reasons"]

        # The image's own HEALTHCHECK, run inside the container: it finds dev's port.
        check = podman.run("healthcheck", "run", cid, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        # The data went to /tmp; everything else is read-only.
        written = podman.run("exec", cid, "ls", "/tmp/.reco-data").stdout.split()
        assert "events.db" in written
        refused = podman.run("exec", cid, "touch", "/opt/venv/x", check=False)
        assert refused.returncode != 0
        assert "Read-only file system" in refused.stderr


def test_processor_role_consumes_real_kafka_into_real_redis(
    podman: Podman,
    engine_image: str,
    kafka_server: KafkaServer,
    redis_server: RedisServer,
    pg_database: str,
    kafka_topic_factory: Callable[..., str],
) -> None:
    topic = kafka_topic_factory(partitions=2)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {
        "RECO_KAFKA_BOOTSTRAP": kafka_server.bootstrap,
        "RECO_TOPIC": topic,
        "RECO_TOPIC_PARTITIONS": "2",
        "RECO_REDIS_URL": redis_server.url,
        "RECO_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}:",
        "RECO_DATABASE_URL": pg_database,
        "RECO_GROUP": f"g-{uuid.uuid4().hex[:8]}",
        "RECO_HOST": "127.0.0.1",
        "RECO_PORT": str(port),
    }
    env = tuple(arg for k, v in settings.items() for arg in ("--env", f"{k}={v}"))
    with podman.container(engine_image, "processor", options=(*READ_ONLY, *env)) as cid:
        wait_until(_ready(podman, cid, base), timeout_s=90, every_s=0.5)

        now = time.time()
        events = [
            Event(uuid.uuid4().hex, f"u{n % 3}", f"item-{n % 5}", "view", now, now)
            for n in range(20)
        ]
        producer = KafkaProducer(kafka_server.bootstrap, topic, delivery_timeout_s=10)
        try:
            producer.produce(events)
        finally:
            producer.close()
        wait_until(
            lambda: _sample(base, "events_processed_total") >= len(events),
            timeout_s=60,
            every_s=0.5,
        )
        check = podman.run("healthcheck", "run", cid, check=False)
        assert check.returncode == 0, check.stdout + check.stderr


def test_train_publishes_a_model_from_the_real_archive_on_a_read_only_root(
    podman: Podman, engine_image: str, pg_database: str
) -> None:
    """`reco train` is the training CronJob's command, run from the engine image: the
    training extras are in it and it needs nothing writable but /tmp."""
    now = time.time()
    aisles = (["tent", "stove", "lamp"], ["shoe", "laces", "socks"])
    events = [
        Event(uuid.uuid4().hex, f"u{n}", item, "view", now + i, now + i)
        for n in range(12)
        for i, item in enumerate(aisles[n % 2])
    ]
    _archive(pg_database, events)

    trained = podman.run(
        "run", "--rm", "--network", "host", *READ_ONLY,
        "--env", f"RECO_DATABASE_URL={pg_database}",
        engine_image, "train", "--dim", "8", "--epochs", "3",
        timeout=300,
    )  # fmt: skip
    report = json.loads(trained.stdout.strip().splitlines()[-1])
    assert report["version"] >= 1
    assert report["metrics"]["events"] == len(events)


def test_train_ranker_runs_from_the_image_on_a_read_only_root(
    podman: Podman, engine_image: str, pg_database: str
) -> None:
    """`reco train --ranker` is the ranker CronJob's command: LightGBM (and the OpenMP
    runtime it links) are in the image, loaded next to usearch without clashing."""
    now = time.time()
    rows = ring_walks(300, start=now - 21 * 86400, every_s=20 * 86400 / 300)
    events = [
        Event(uuid.uuid4().hex, r["user_id"], r["item_id"], "view", r["timestamp"],
              r["timestamp"], r["session_id"])
        for r in rows
    ]  # fmt: skip
    _archive(pg_database, events)

    trained = podman.run(
        "run", "--rm", "--network", "host", *READ_ONLY,
        "--env", f"RECO_DATABASE_URL={pg_database}",
        engine_image, "train", "--ranker",
        timeout=300,
    )  # fmt: skip
    report = json.loads(trained.stdout.strip().splitlines()[-1])
    assert report["kind"] == "ranker"
    assert report["metrics"]["events"] == len(events)
    assert report["metrics"]["examples"] > 100
    assert report["metrics"]["valid_ndcg20_ranker"] > 0


def _archive(url: str, events: list[Event]) -> None:
    archive = PostgresArchive.from_url(url)
    try:
        records = [Record(0, n, e.user_id, e.to_json()) for n, e in enumerate(events)]
        archive.write(list(zip(records, events, strict=True)))
    finally:
        archive.close()


def test_operator_image_runs_as_a_non_root_user_and_starts(
    podman: Podman, operator_image: str
) -> None:
    config = _config(podman, operator_image)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["python", "-m", "reco_operator"]
    assert set(config["ExposedPorts"]) == {"8080/tcp"}
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])

    python = ("run", "--rm", *READ_ONLY, "--entrypoint", "python", operator_image)
    find_main = "import importlib.util as u; print(bool(u.find_spec('reco_operator.__main__')))"
    if podman.run(*python, "-c", find_main).stdout.strip() == "True":
        shown = podman.run("run", "--rm", *READ_ONLY, operator_image, "--help")
        print("operator image: `python -m reco_operator --help` answered")
        assert "usage" in shown.stdout.lower(), shown.stdout + shown.stderr
    else:
        # The operator's entry point is not written yet: its package and kopf must import.
        imported = podman.run(
            *python, "-c", "import kopf, reco_operator; print(reco_operator.GROUP)"
        )
        print("operator image: reco_operator has no __main__ yet; kopf and the package import")
        assert imported.stdout.strip() == "recoengine.io"
