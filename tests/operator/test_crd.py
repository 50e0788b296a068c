"""The CRD is generated from the operator's spec model and the engine's settings model: the
committed file is exactly what the generator writes, and the schema is structural."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reco.settings import ROLE_SETTINGS, EngineSettings, Experiment, TrainSettings
from reco_operator.crd import CRD_PATH, crd, render
from reco_operator.spec import ENGINE_FIELDS, SPEC_SETTINGS, InvalidSpec, engine_key, parse_spec
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
    spec = _schema()["properties"]["spec"]["properties"]
    engine = spec["engine"]["properties"]
    defaults = EngineSettings.model_validate({})
    assert set(engine) == {
        engine_key(f) for f in EngineSettings.model_fields if f not in SPEC_SETTINGS
    }
    assert {"experiments"} == SPEC_SETTINGS
    for field in SPEC_SETTINGS:
        assert engine_key(field) in spec, f"{field}: a field of the spec's own"
        assert engine_key(field) not in engine, f"{field}: one place to set it"
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


# An A/B test as the CRD spells it: camelCase, durations in seconds.
EXPERIMENT: dict[str, Any] = {
    "name": "ranker-ab",
    "traffic": 0.5,
    "attributionWindowSeconds": 900,
    "variants": [
        {"name": "control", "weight": 1, "settings": {"weights": {"coview": 2}}},
        {"name": "ranker", "weight": 1, "ranker": True, "settings": {"historyDecay": 0.8}},
    ],
}


def test_experiments_take_the_engine_s_fields_and_bounds_in_camel_case() -> None:
    experiments = _schema()["properties"]["spec"]["properties"]["experiments"]
    assert experiments["type"] == "array"
    assert "default" not in experiments, "absent: no experiment"
    experiment = experiments["items"]
    fields = experiment["properties"]
    assert set(fields) == {"name", "variants", "traffic", "attributionWindowSeconds"}
    assert set(experiment["required"]) == {"name", "variants"}
    assert fields["traffic"]["default"] == 1.0
    assert (fields["traffic"]["minimum"], fields["traffic"]["maximum"]) == (0, 1)
    assert fields["traffic"]["exclusiveMinimum"] is True
    assert fields["attributionWindowSeconds"]["default"] == 1800.0
    variants = fields["variants"]
    assert variants["minItems"] == 2
    variant = variants["items"]["properties"]
    assert set(variant) == {"name", "weight", "ranker", "settings"}
    assert variant["name"]["pattern"] == fields["name"]["pattern"]
    assert set(variant["settings"]["properties"]) == {
        "weights", "historyDecay", "contextItems", "relatedPerItem", "neighbourSample",
        "neighbourK",
    }  # fmt: skip
    assert "default" not in variant["settings"]["properties"]["weights"], "unset: served ones"


def test_the_api_server_refuses_repeated_names_and_traffic_above_one() -> None:
    experiments = _schema()["properties"]["spec"]["properties"]["experiments"]
    variants = experiments["items"]["properties"]["variants"]
    for names in (experiments, variants):
        assert names["x-kubernetes-list-type"] == "map"
        assert names["x-kubernetes-list-map-keys"] == ["name"]
    (rule,) = experiments["x-kubernetes-validations"]
    assert rule["rule"] == "self.map(e, e.traffic).sum() <= 1.000000001"
    assert "traffic adds up to more than 1" in rule["message"]


def test_experiments_become_the_engine_s_settings() -> None:
    parsed = parse_spec({**MINIMAL, "experiments": [EXPERIMENT]})
    (experiment,) = parsed.engine_settings().experiments
    assert experiment == Experiment.model_validate(EXPERIMENT)
    assert experiment.attribution_window_s == 900
    assert experiment.variants[1].ranker is True
    assert experiment.variants[0].settings.weights is not None
    assert experiment.variants[0].settings.weights.coview == 2
    assert experiment.variants[1].settings.history_decay == 0.8
    assert parse_spec(MINIMAL).engine_settings().experiments == []


def _experiment(**change: Any) -> dict[str, Any]:
    return {**EXPERIMENT, **change}


@pytest.mark.parametrize(
    ("experiments", "message"),
    [
        (
            [_experiment(variants=[{"name": "control"}])],
            r"spec\.experiments\[0\]\.variants: List should have at least 2 items",
        ),
        (
            [_experiment(variants=[{"name": "a"}, {"name": "a"}])],
            r"spec\.experiments\[0\]: .*variant names must differ",
        ),
        (
            [_experiment(name="a", traffic=0.6), _experiment(name="b", traffic=0.5)],
            r"spec\.experiments: .*traffic adds up to 1\.1; at most 1",
        ),
        ([_experiment(), _experiment()], r"spec\.experiments: .*experiment names must differ"),
        ([_experiment(name="Ranker AB")], r"spec\.experiments\[0\]\.name: String should match"),
        ([_experiment(traffic=0)], r"spec\.experiments\[0\]\.traffic"),
        ([_experiment(traffic=1.5)], r"spec\.experiments\[0\]\.traffic"),
        (
            [_experiment(attributionWindowSeconds=0)],
            r"spec\.experiments\[0\]\.attributionWindowSeconds",
        ),
        (
            [_experiment(variants=[{"name": "a", "weight": 0}, {"name": "b"}])],
            r"spec\.experiments\[0\]\.variants\[0\]\.weight",
        ),
        (
            [_experiment(variants=[{"name": "a"}, {"name": "b", "settings": {"historyDecay": 2}}])],
            r"spec\.experiments\[0\]\.variants\[1\]\.settings\.historyDecay",
        ),
        (
            [_experiment(variants=[{"name": "a"}, {"name": "b", "settings": {"useRanker": 1}}])],
            r"spec\.experiments\[0\]\.variants\[1\]\.settings\.useRanker: Extra inputs",
        ),
    ],
)
def test_an_experiment_the_engine_would_refuse_names_the_field(
    experiments: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_spec({**MINIMAL, "experiments": experiments})


def test_spec_engine_does_not_take_experiments() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.engine\.experiments: set spec\.experiments"):
        parse_spec({**MINIMAL, "engine": {"experiments": [EXPERIMENT]}})
    engine = _schema()["properties"]["spec"]["properties"]["engine"]["properties"]
    assert "experiments" not in engine


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
