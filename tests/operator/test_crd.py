"""The CRD is generated from the operator's spec model and the engine's settings model: the
committed file is exactly what the generator writes, and the schema is structural."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reco.settings import ROLE_SETTINGS, EngineSettings, TrainSettings
from reco_operator.crd import CRD_PATH, crd, render
from reco_operator.spec import ENGINE_FIELDS, InvalidSpec, engine_key, parse_spec
from tests.conftest import REPO

pytestmark = pytest.mark.unit

MINIMAL: dict[str, Any] = {
    "kafka": {"bootstrapServers": "kafka:9092"},
    "redis": {"urlSecretRef": {"name": "backends", "key": "redis-url"}},
    "postgres": {"urlSecretRef": {"name": "backends", "key": "database-url"}},
}


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _walk(value, f"{path}[{index}]")
    return found


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_the_committed_crd_is_what_the_generator_writes() -> None:
    committed = (REPO / CRD_PATH).read_text()
    assert committed == render(), "the CRD is stale: run `make crd` and commit the result"


def test_the_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title"} & set(node), path
        if "properties" in node:
            assert "additionalProperties" not in node, path
            assert node.get("type") == "object", path
        if isinstance(node.get("minimum"), bool) or isinstance(node.get("maximum"), bool):
            raise AssertionError(f"{path}: a bound must be a number")


def test_every_engine_setting_is_in_the_crd_with_its_default() -> None:
    engine = _schema()["properties"]["spec"]["properties"]["engine"]["properties"]
    defaults = EngineSettings.model_validate({})
    assert set(engine) == {engine_key(f) for f in EngineSettings.model_fields}
    for key, field in ENGINE_FIELDS.items():
        value = getattr(defaults, field)
        if isinstance(value, float | int) and not isinstance(value, bool):
            assert engine[key]["default"] == value, key
    assert engine["eventWeights"]["default"] == defaults.event_weights


def test_every_engine_setting_is_read_by_some_role() -> None:
    """The operator rolls a role's pods when one of its settings changes: a setting no role
    lists would change nothing until the pods restart for another reason."""
    assert set().union(*ROLE_SETTINGS.values()) == set(EngineSettings.model_fields)


def test_the_tune_block_is_optional_and_its_deadline_must_outlast_its_budget() -> None:
    training = _schema()["properties"]["spec"]["properties"]["training"]
    tune = training["properties"]["tune"]
    assert "default" not in tune, "absent: no tune CronJob"
    (rule,) = tune["x-kubernetes-validations"]
    assert rule["rule"] == "self.activeDeadlineSeconds > self.budgetSeconds"
    assert "publishes nothing" in rule["message"]
    assert tune["properties"]["budgetSeconds"]["default"] == 900
    assert tune["properties"]["activeDeadlineSeconds"]["default"] == 3600


def test_the_ranker_block_is_optional_with_the_engine_s_bounds() -> None:
    training = _schema()["properties"]["spec"]["properties"]["training"]
    ranker = training["properties"]["ranker"]
    assert "default" not in ranker, "absent: no ranker CronJob"
    fields = ranker["properties"]
    bounds = TrainSettings.model_fields
    candidates = bounds["ranker_candidates"]
    assert (fields["candidates"]["minimum"], fields["candidates"]["maximum"]) == (2, 2000)
    assert fields["candidates"]["default"] == candidates.default
    assert fields["maxRequests"]["minimum"] == 100
    assert fields["maxRequests"]["default"] == bounds["ranker_max_requests"].default
    assert fields["schedule"]["default"] == "0 4 * * *"
    assert fields["activeDeadlineSeconds"]["default"] == 3600


def test_the_sample_specs_parse() -> None:
    for sample in sorted((REPO / "manifests" / "samples").glob("*.yaml")):
        for document in yaml.safe_load_all(sample.read_text()):
            if document and document.get("kind") == "RecoEngine":
                parse_spec(document["spec"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"engine": {"weights": {"coview": -1}}}, "spec.engine.weights.coview"),
        ({"engine": {"eventWeights": {"view": 1, "": 2}}}, "spec.engine.eventWeights"),
        ({"engine": {"colour": 1}}, "unknown settings colour"),
        ({"ingest": {"replicas": -1}}, "spec.ingest.replicas"),
        ({"kafka": {"bootstrapServers": ""}}, "spec.kafka.bootstrapServers"),
        (
            {"training": {"tune": {"budgetSeconds": 3600}}},
            "spec.training.tune: .*killed before the search ends",
        ),
        (
            {"training": {"tune": {"activeDeadlineSeconds": 600}}},
            "spec.training.tune: .*activeDeadlineSeconds must be greater than budgetSeconds",
        ),
        ({"training": {"tune": {"protocol": "session"}}}, "spec.training.tune.protocol"),
        ({"training": {"tune": {"testDays": 0}}}, "spec.training.tune.testDays"),
        ({"training": {"ranker": {"candidates": 1}}}, "spec.training.ranker.candidates"),
        ({"training": {"ranker": {"candidates": 2001}}}, "spec.training.ranker.candidates"),
        ({"training": {"ranker": {"maxRequests": 50}}}, "spec.training.ranker.maxRequests"),
        ({"training": {"ranker": {"sinceDays": 0}}}, "spec.training.ranker.sinceDays"),
        (
            {"training": {"ranker": {"activeDeadlineSeconds": 30}}},
            "spec.training.ranker.activeDeadlineSeconds",
        ),
        ({"training": {"ranker": {"schedule": "daily"}}}, "spec.training.ranker.schedule"),
    ],
)
def test_a_spec_the_engine_would_refuse_names_the_field(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_spec({**MINIMAL, **change})
