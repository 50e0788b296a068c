"""compose.yaml: valid under the Compose Specification, and wired as the README says.

docker compose cannot run on the machines that run this suite (there is no Docker engine;
podman runs the engine image itself, in tests/images), so the file is not started here.
It is validated against the Compose Specification's JSON schema (the copy check-jsonschema
ships, from PyPI), and its wiring is checked: the four roles from images/engine/Dockerfile
on the README's ports, each started once its backends are healthy, pinned images,
Prometheus scraping every role, Grafana given the chart's dashboard.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ROLES = {"api": 8080, "ingest": 8081, "processor": 8082, "archiver": 8083}
# What each role opens at start (reco.services.*): it must not start before them.
BACKENDS = {
    "ingest": {"kafka"},
    "processor": {"kafka", "redis", "postgres"},
    "archiver": {"kafka", "postgres"},
    "api": {"redis", "postgres"},
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    return data


def _compose_schema() -> dict[str, Any]:
    vendored = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def test_compose_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = _compose_schema()
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_refuses_a_broken_compose_file(compose: dict[str, Any]) -> None:
    """The validation above can fail: a misspelt key is refused."""
    schema = _compose_schema()
    broken = {**compose, "services": {**compose["services"], "api": {"imagee": "x"}}}
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_roles_run_the_engine_image_on_the_readme_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for role, port in ROLES.items():
        service = services[role]
        assert service["build"] == {"context": ".", "dockerfile": "images/engine/Dockerfile"}
        assert service["command"] == [role]
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        env = service["environment"]
        assert env["RECO_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["RECO_REDIS_URL"].startswith("redis://redis:6379/")
        assert env["RECO_DATABASE_URL"].startswith("postgresql://reco:reco@postgres:5432/")
    assert (REPO / "images" / "engine" / "Dockerfile").is_file()


def test_roles_start_once_their_backends_are_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for role, backends in BACKENDS.items():
        depends = services[role]["depends_on"]
        assert set(depends) == backends, role
        for backend in backends:
            assert depends[backend] == {"condition": "service_healthy"}
            assert services[backend]["healthcheck"]["test"][0] == "CMD"
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"


def test_every_pulled_image_is_pinned_to_a_release(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        # A release is major.minor.patch; PostgreSQL's are major.minor (17.10) since 10.
        release = r"\d+\.\d+" if image.startswith("postgres:") else r"v?\d+\.\d+\.\d+"
        assert re.fullmatch(release + r"(-[a-z0-9.]+)?", tag), f"{name}: {image} is not pinned"


def test_prometheus_scrapes_every_role(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["prometheus"]["volumes"]
    source = next(m.split(":")[0] for m in mounts if m.endswith("/prometheus.yml:ro"))
    config = yaml.safe_load((REPO / source).read_text(encoding="utf-8"))
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {role: [f"{role}:{port}"] for role, port in ROLES.items()}


def test_grafana_gets_the_charts_dashboard_and_its_provisioning(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(m.rsplit(":", 1)[0].split(":", 1) for m in grafana["volumes"])
    for source in mounts:
        assert (REPO / source).is_file(), source
    dashboard_in = mounts["./charts/reco-engine/dashboards/reco-engine.json"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == dashboard_in
    provider = yaml.safe_load(
        (REPO / "deploy/compose/grafana/dashboards.yaml").read_text(encoding="utf-8")
    )
    assert Path(dashboard_in).parent == Path(provider["providers"][0]["options"]["path"])
    datasources = yaml.safe_load(
        (REPO / "deploy/compose/grafana/datasources.yaml").read_text(encoding="utf-8")
    )
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
