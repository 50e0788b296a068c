"""The pure builders: a RecoEngine's spec to its children's manifests, without a cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reco.settings import EngineSettings, Experiment
from reco_operator.builders import (
    CONFIG_HASH,
    PORTS,
    Engine,
    children,
    config_hash,
    config_map,
    deployment,
    engine_env,
    missing_secrets,
    network_policy,
    ranker_cron_job,
    role_settings_env,
    tune_cron_job,
)
from reco_operator.spec import ROLES, parse_spec
from reco_operator.status import Problem, Replicas, conditions, replicas_of
from tests.operator.test_crd import EXPERIMENT, MINIMAL

pytestmark = pytest.mark.unit

SECRETS = {"backends": {"redis-url": "redis://r:6379/0", "database-url": "postgresql://u@p/db"}}


def _engine(spec: dict[str, Any] | None = None, **kw: Any) -> Engine:
    return Engine(
        name="shop",
        namespace="ns",
        uid="uid-1",
        spec=parse_spec({**MINIMAL, **(spec or {})}),
        partitions=kw.pop("partitions", 12),
        secrets=kw.pop("secrets", SECRETS),
        **kw,
    )


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in manifests:
        out.setdefault(m["kind"], []).append(m["metadata"]["name"])
    return out


def _hash(engine: Engine, role: str) -> str:
    value: str = deployment(engine, role)["spec"]["template"]["metadata"]["annotations"][
        CONFIG_HASH
    ]
    return value


def test_a_minimal_spec_gives_config_services_deployments_and_budgets() -> None:
    kinds = _by_kind(children(_engine()))
    assert kinds == {
        "ConfigMap": ["shop-engine"],
        "Service": [f"shop-{r}" for r in ROLES],
        "Deployment": [f"shop-{r}" for r in ROLES],
        "PodDisruptionBudget": [f"shop-{r}" for r in ROLES],
    }


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    for manifest in children(_engine()):
        meta = manifest["metadata"]
        assert meta["namespace"] == "ns"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "recoengine.io/v1alpha1",
                "kind": "RecoEngine",
                "name": "shop",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["app.kubernetes.io/instance"] == "shop"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "reco-operator"


def test_pods_pass_the_restricted_pod_security_profile() -> None:
    for role in ROLES:
        pod = deployment(_engine(), role)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_each_role_runs_its_command_on_its_port_with_probes_on_its_health() -> None:
    for role in ROLES:
        (container,) = deployment(_engine(), role)["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [role]
        assert container["ports"] == [
            {"name": "http", "containerPort": PORTS[role], "protocol": "TCP"}
        ]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        env = {e["name"]: e for e in container["env"]}
        assert env["RECO_PORT"]["value"] == str(PORTS[role])
        if role != "api":  # the api talks to Kafka only with experiments
            assert env["RECO_TOPIC_PARTITIONS"]["value"] == "12"


def test_backend_urls_come_from_the_secrets_and_only_to_the_roles_that_use_them() -> None:
    for role in ROLES:
        (container,) = deployment(_engine(), role)["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert ("RECO_REDIS_URL" in env) == (role in ("processor", "api"))
        assert ("RECO_DATABASE_URL" in env) == (role != "ingest")
        if "RECO_REDIS_URL" in env:
            assert env["RECO_REDIS_URL"]["valueFrom"] == {
                "secretKeyRef": {"name": "backends", "key": "redis-url"}
            }


def test_the_config_map_holds_every_engine_setting_as_the_engine_reads_it() -> None:
    env = engine_env(parse_spec({**MINIMAL, "engine": {"weights": {"coview": 2}}}))
    assert env["RECO_POPULARITY_HALF_LIFE_S"] == "259200.0"
    assert '"coview": 2.0' in env["RECO_WEIGHTS"]
    assert env["RECO_EVENT_WEIGHTS"].startswith("{")


def test_a_setting_rolls_exactly_the_roles_that_read_it() -> None:
    base = _engine()
    weights = _engine({"engine": {"weights": {"coview": 2.0}}})
    types = _engine({"engine": {"eventWeights": {"view": 1, "like": 2}}})
    rolled = {r for r in ROLES if _hash(base, r) != _hash(weights, r)}
    assert rolled == {"api"}, "scoring weights concern the api only"
    rolled = {r for r in ROLES if _hash(base, r) != _hash(types, r)}
    assert rolled == {"ingest", "processor"}, "event types: validated and applied"


def test_a_rotated_secret_rolls_the_roles_that_read_it() -> None:
    rotated = {"backends": {**SECRETS["backends"], "redis-url": "redis://r:6380/0"}}
    rolled = {r for r in ROLES if _hash(_engine(), r) != _hash(_engine(secrets=rotated), r)}
    assert rolled == {"processor", "api"}


def test_training_monitoring_and_network_policies_when_asked() -> None:
    engine = _engine(
        {
            "training": {"schedule": "15 2 * * *", "sinceDays": 30},
            "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
            "networkPolicy": {"enabled": True},
        }
    )
    kinds = _by_kind(children(engine))
    assert kinds["CronJob"] == ["shop-train"]
    assert kinds["ServiceMonitor"] == ["shop"]
    assert kinds["NetworkPolicy"] == [f"shop-{r}" for r in ROLES]
    (cron,) = [m for m in children(engine) if m["kind"] == "CronJob"]
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["train", "--algorithm", "als", "--since-days", "30.0"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def _tune_container(engine: Engine) -> dict[str, Any]:
    cron = tune_cron_job(engine)
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def _tune_hash(engine: Engine) -> str:
    template = tune_cron_job(engine)["spec"]["jobTemplate"]["spec"]["template"]
    value: str = template["metadata"]["annotations"][CONFIG_HASH]
    return value


def test_tune_runs_reco_tune_on_its_schedule_one_search_at_a_time() -> None:
    training = {
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "tune": {
            "schedule": "0 5 * * *",
            "protocol": "user",
            "testDays": 3.5,
            "budgetSeconds": 1200,
            "activeDeadlineSeconds": 1800,
            "resources": {"requests": {"cpu": "2"}},
        },
    }
    engine = _engine({"training": training})
    assert _by_kind(children(engine))["CronJob"] == ["shop-train", "shop-tune"]
    cron = tune_cron_job(engine)
    assert cron["metadata"]["name"] == "shop-tune"
    assert cron["metadata"]["labels"]["app.kubernetes.io/component"] == "tune"
    assert cron["spec"]["schedule"] == "0 5 * * *"
    assert cron["spec"]["suspend"] is False
    assert cron["spec"]["concurrencyPolicy"] == "Forbid", "two searches would publish out of order"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 1800
    pod = job["template"]["spec"]
    assert job["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "tune"
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"pool": "batch"}, "the training block's scheduling"
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == [
        "tune", "--protocol", "user", "--test-days", "3.5", "--budget-s", "1200"
    ]  # fmt: skip
    assert container["resources"] == {"requests": {"cpu": "2"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]

    defaults = _engine({"training": {"tune": {"sinceDays": 30}}})
    assert _tune_container(defaults)["args"] == [
        "tune", "--protocol", "next", "--test-days", "7.0", "--budget-s", "900",
        "--since-days", "30.0",
    ]  # fmt: skip
    cron = tune_cron_job(defaults)
    assert cron["spec"]["schedule"] == "30 3 * * *"
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600


def test_no_tune_cron_job_without_its_block() -> None:
    assert "CronJob" not in _by_kind(children(_engine()))
    assert _by_kind(children(_engine({"training": {}})))["CronJob"] == ["shop-train"]


def test_tune_reads_the_archive_and_the_settings_of_the_api_and_the_processor() -> None:
    engine = _engine(
        {
            "training": {"algorithm": "item2vec", "tune": {}},
            "engine": {"weights": {"coview": 2}, "eventWeights": {"view": 1, "buy": 9}},
        }
    )
    env = _tune_container(engine)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), "each variable once"
    by_name = {e["name"]: e for e in env}
    assert by_name["RECO_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "backends", "key": "database-url"}
    }
    assert by_name["RECO_LOG_FORMAT"]["value"] == "json"
    assert by_name["HOME"]["value"] == "/tmp"
    assert by_name["RECO_ALGORITHM"]["value"] == "item2vec", "vectors trained as reco train does"
    assert "RECO_REDIS_URL" not in by_name
    assert json.loads(by_name["RECO_WEIGHTS"]["value"])["coview"] == 2.0, "the api's weights"
    assert json.loads(by_name["RECO_EVENT_WEIGHTS"]["value"]) == {"view": 1.0, "buy": 9.0}
    config = engine_env(engine.spec)
    for role in ("api", "processor"):
        for name, value in role_settings_env(engine, role).items():
            assert by_name[name]["value"] == value == config[name], (role, name)
    assert "RECO_MAX_FUTURE_SKEW_S" not in by_name, "ingest's own setting"


def test_the_tune_job_rolls_with_the_settings_and_the_secret_it_reads() -> None:
    base = _engine({"training": {"tune": {}}})
    weights = _engine({"training": {"tune": {}}, "engine": {"weights": {"coview": 2.0}}})
    types = _engine({"training": {"tune": {}}, "engine": {"eventWeights": {"view": 1, "b": 2}}})
    skew = _engine({"training": {"tune": {}}, "engine": {"maxFutureSkewSeconds": 60}})
    rotated = {"backends": {**SECRETS["backends"], "database-url": "postgresql://v@p/db"}}
    assert _tune_hash(weights) != _tune_hash(base), "the api's weights: where the search starts"
    assert _tune_hash(types) != _tune_hash(base), "the processor's event weights"
    assert _tune_hash(_engine({"training": {"tune": {}}}, secrets=rotated)) != _tune_hash(base)
    assert _tune_hash(skew) == _tune_hash(base), "ingest's setting is not the search's"
    assert config_hash(base, "tune") == _tune_hash(base)


def _ranker_pod(engine: Engine) -> dict[str, Any]:
    pod: dict[str, Any] = ranker_cron_job(engine)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def _ranker_hash(engine: Engine) -> str:
    template = ranker_cron_job(engine)["spec"]["jobTemplate"]["spec"]["template"]
    value: str = template["metadata"]["annotations"][CONFIG_HASH]
    return value


def test_the_ranker_runs_reco_train_ranker_on_its_schedule_one_training_at_a_time() -> None:
    training = {
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "tune": {},
        "ranker": {
            "schedule": "0 6 * * *",
            "sinceDays": 14,
            "activeDeadlineSeconds": 1800,
            "resources": {"requests": {"cpu": "2"}},
        },
    }
    engine = _engine({"training": training})
    assert _by_kind(children(engine))["CronJob"] == ["shop-train", "shop-tune", "shop-rank"]
    cron = ranker_cron_job(engine)
    assert cron["metadata"]["name"] == "shop-rank"
    assert cron["metadata"]["labels"]["app.kubernetes.io/component"] == "rank"
    assert cron["spec"]["schedule"] == "0 6 * * *"
    assert cron["spec"]["suspend"] is False
    assert cron["spec"]["concurrencyPolicy"] == "Forbid", "two trainings would publish out of order"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 1800
    assert job["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "rank"
    pod = _ranker_pod(engine)
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"pool": "batch"}, "the training block's scheduling"
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["train", "--ranker", "--since-days", "14.0"]
    assert container["resources"] == {"requests": {"cpu": "2"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]

    defaults = _engine({"training": {"ranker": {}}})
    (container,) = _ranker_pod(defaults)["containers"]
    assert container["args"] == ["train", "--ranker"]
    cron = ranker_cron_job(defaults)
    assert cron["spec"]["schedule"] == "0 4 * * *"
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600


def test_no_ranker_cron_job_without_its_block() -> None:
    assert _by_kind(children(_engine({"training": {"tune": {}}})))["CronJob"] == [
        "shop-train",
        "shop-tune",
    ]


def test_the_ranker_reads_the_archive_and_the_settings_of_the_api_and_the_processor() -> None:
    engine = _engine(
        {
            "training": {
                "algorithm": "item2vec",
                "ranker": {
                    "candidates": 300,
                    "maxRequests": 20000,
                    "target": "purchase",
                    "catalog": False,
                },
            },
            "engine": {"weights": {"coview": 2}, "eventWeights": {"view": 1, "buy": 9}},
        }
    )
    (container,) = _ranker_pod(engine)["containers"]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), "each variable once"
    by_name = {e["name"]: e for e in container["env"]}
    assert by_name["RECO_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "backends", "key": "database-url"}
    }
    assert by_name["RECO_LOG_FORMAT"]["value"] == "json"
    assert by_name["HOME"]["value"] == "/tmp"
    assert by_name["RECO_ALGORITHM"]["value"] == "item2vec", "vectors trained as reco train does"
    assert by_name["RECO_RANKER_CANDIDATES"]["value"] == "300"
    assert by_name["RECO_RANKER_MAX_REQUESTS"]["value"] == "20000"
    assert by_name["RECO_RANKER_TARGET"]["value"] == "purchase"
    assert by_name["RECO_RANKER_CATALOG"]["value"] == "false"
    assert "RECO_REDIS_URL" not in by_name
    assert json.loads(by_name["RECO_WEIGHTS"]["value"])["coview"] == 2.0, "the api's weights"
    assert json.loads(by_name["RECO_EVENT_WEIGHTS"]["value"]) == {"view": 1.0, "buy": 9.0}
    assert by_name["RECO_USE_RANKER"]["value"] == "true", "the api's: the replay ranks as it"
    assert by_name["RECO_TUNED_SETTINGS"]["value"] == "true", "with the reco tune result over"
    assert "RECO_MAX_FUTURE_SKEW_S" not in by_name, "ingest's own setting"

    (container,) = _ranker_pod(_engine({"training": {"ranker": {}}}))["containers"]
    defaults = {e["name"]: e for e in container["env"]}
    assert defaults["RECO_RANKER_CANDIDATES"]["value"] == "200"
    assert defaults["RECO_RANKER_MAX_REQUESTS"]["value"] == "100000"
    assert defaults["RECO_RANKER_TARGET"]["value"] == "next"
    assert defaults["RECO_RANKER_CATALOG"]["value"] == "true"
    assert defaults["RECO_ALGORITHM"]["value"] == "als"


def test_the_ranker_job_rolls_with_the_settings_and_the_secret_it_reads() -> None:
    base = _engine({"training": {"ranker": {}}})
    weights = _engine({"training": {"ranker": {}}, "engine": {"weights": {"coview": 2.0}}})
    skew = _engine({"training": {"ranker": {}}, "engine": {"maxFutureSkewSeconds": 60}})
    rotated = {"backends": {**SECRETS["backends"], "database-url": "postgresql://v@p/db"}}
    assert _ranker_hash(weights) != _ranker_hash(base), "the api's weights: what it replays"
    assert _ranker_hash(_engine({"training": {"ranker": {}}}, secrets=rotated)) != _ranker_hash(
        base
    )
    assert _ranker_hash(skew) == _ranker_hash(base), "ingest's setting is not the replay's"
    assert config_hash(base, "rank") == _ranker_hash(base)


def test_a_service_monitor_follows_its_crd_unless_the_spec_says() -> None:
    assert "ServiceMonitor" not in _by_kind(children(_engine()))
    assert "ServiceMonitor" in _by_kind(children(_engine(service_monitor_crd=True)))
    off = _engine({"monitoring": {"serviceMonitor": {"enabled": False}}}, service_monitor_crd=True)
    assert "ServiceMonitor" not in _by_kind(children(off))


def test_kafka_credentials_come_from_their_secret() -> None:
    spec = {
        "kafka": {
            "bootstrapServers": "kafka:9093",
            "securityProtocol": "SASL_SSL",
            "sasl": {"secretName": "kafka-user"},
            "tls": {"secretName": "kafka-ca"},
        }
    }
    pod = deployment(_engine(spec), "processor")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["RECO_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["RECO_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-user",
        "key": "password",
    }
    assert env["RECO_KAFKA_SSL_CA_LOCATION"]["value"] == "/etc/reco/kafka-tls/ca.crt"
    assert {"name": "kafka-tls", "secret": {"secretName": "kafka-ca"}} in pod["volumes"]
    missing = missing_secrets(_engine(spec).spec, SECRETS)
    assert missing == ["kafka-user/username", "kafka-user/password", "kafka-ca/ca.crt"]


def _env_of(engine: Engine, role: str) -> dict[str, dict[str, Any]]:
    (container,) = deployment(engine, role)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


SECURE_KAFKA = {
    "bootstrapServers": "kafka:9093",
    "securityProtocol": "SASL_SSL",
    "sasl": {"secretName": "kafka-user"},
    "tls": {"secretName": "kafka-ca"},
}
KAFKA_SECRETS = {
    **SECRETS,
    "kafka-user": {"username": "reco", "password": "secret"},
    "kafka-ca": {"ca.crt": "PEM"},
}
SECOND = {
    "name": "decay",
    "traffic": 0.25,
    "variants": [{"name": "a"}, {"name": "b", "weight": 3, "settings": {"neighbourK": 20}}],
}


def test_experiments_reach_the_api_and_the_processor_as_the_engine_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = _engine({"experiments": [EXPERIMENT, SECOND]})
    data = config_map(engine)["data"]
    written = json.loads(data["RECO_EXPERIMENTS"])
    assert written[0]["attribution_window_s"] == 900, "snake_case, what EngineSettings reads"
    assert written[0]["variants"][1]["settings"] == {"history_decay": 0.8}, "unset: left out"
    for role in ("api", "processor"):
        assert role_settings_env(engine, role)["RECO_EXPERIMENTS"] == data["RECO_EXPERIMENTS"]
    for role in ("ingest", "archiver"):
        assert "RECO_EXPERIMENTS" not in role_settings_env(engine, role)
    # What a pod reads from its ConfigMap gives the spec's experiments back.
    for name in list(EngineSettings.model_fields):
        monkeypatch.delenv(f"RECO_{name.upper()}", raising=False)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    assert EngineSettings().experiments == [
        Experiment.model_validate(EXPERIMENT),
        Experiment.model_validate(SECOND),
    ]
    assert json.loads(engine_env(_engine().spec)["RECO_EXPERIMENTS"]) == []


def test_experiments_roll_the_api_and_the_processor() -> None:
    base = _engine()
    one = _engine({"experiments": [EXPERIMENT]})
    traffic = _engine({"experiments": [{**EXPERIMENT, "traffic": 0.4}]})
    assert {r for r in ROLES if _hash(base, r) != _hash(one, r)} == {"api", "processor"}
    assert {r for r in ROLES if _hash(one, r) != _hash(traffic, r)} == {"api", "processor"}


def test_the_api_gets_kafka_only_with_experiments() -> None:
    kafka_env = {
        "RECO_KAFKA_BOOTSTRAP", "RECO_TOPIC", "RECO_TOPIC_PARTITIONS", "RECO_TOPIC_REPLICATION",
        "RECO_KAFKA_SECURITY_PROTOCOL", "RECO_KAFKA_SASL_MECHANISM", "RECO_KAFKA_SASL_USERNAME",
        "RECO_KAFKA_SASL_PASSWORD", "RECO_KAFKA_SSL_CA_LOCATION",
    }  # fmt: skip
    tls_volume = {"name": "kafka-tls", "secret": {"secretName": "kafka-ca"}}
    without = _engine({"kafka": SECURE_KAFKA}, secrets=KAFKA_SECRETS)
    with_experiments = _engine(
        {"kafka": SECURE_KAFKA, "experiments": [EXPERIMENT]}, secrets=KAFKA_SECRETS
    )
    assert not kafka_env & set(_env_of(without, "api"))
    pod = deployment(without, "api")["spec"]["template"]["spec"]
    assert tls_volume not in pod["volumes"]
    assert all(m["name"] != "kafka-tls" for m in pod["containers"][0]["volumeMounts"])

    env = _env_of(with_experiments, "api")
    assert kafka_env <= set(env)
    assert env["RECO_KAFKA_BOOTSTRAP"]["value"] == "kafka:9093"
    assert env["RECO_TOPIC"]["value"] == "reco.events"
    assert env["RECO_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["RECO_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-user",
        "key": "password",
    }
    assert env["RECO_KAFKA_SSL_CA_LOCATION"]["value"] == "/etc/reco/kafka-tls/ca.crt"
    pod = deployment(with_experiments, "api")["spec"]["template"]["spec"]
    assert tls_volume in pod["volumes"]
    assert {
        "name": "kafka-tls", "mountPath": "/etc/reco/kafka-tls", "readOnly": True
    } in pod["containers"][0]["volumeMounts"]  # fmt: skip
    for role in ("ingest", "processor", "archiver"):
        assert _env_of(without, role).keys() == _env_of(with_experiments, role).keys(), role
        assert kafka_env <= set(_env_of(without, role)), role


def test_a_rotated_kafka_password_rolls_the_api_only_when_it_writes_impressions() -> None:
    rotated = {**KAFKA_SECRETS, "kafka-user": {"username": "reco", "password": "rotated"}}
    for spec, rolled in (
        ({"kafka": SECURE_KAFKA}, {"ingest", "processor", "archiver"}),
        ({"kafka": SECURE_KAFKA, "experiments": [EXPERIMENT]}, set(ROLES)),
    ):
        before = _engine(spec, secrets=KAFKA_SECRETS)
        after = _engine(spec, secrets=rotated)
        assert {r for r in ROLES if _hash(before, r) != _hash(after, r)} == rolled, spec


def test_the_api_s_network_policy_leaves_its_way_to_kafka_open() -> None:
    engine = _engine({"experiments": [EXPERIMENT], "networkPolicy": {"enabled": True}})
    policy = network_policy(engine, "api")
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress (Kafka, Redis, PostgreSQL) open"
    assert "egress" not in policy["spec"]


def test_the_config_hash_is_stable() -> None:
    assert config_hash(_engine(), "api") == config_hash(_engine(), "api")


def test_conditions_say_what_waits_and_keep_their_transition_time() -> None:
    rolling = {r: Replicas(2, 1 if r == "api" else 2, 2) for r in ROLES}
    first = conditions([], generation=3, replicas=rolling, problems=[], at="T1")
    by_type = {c["type"]: c for c in first}
    assert by_type["Ready"]["status"] == "False"
    assert "api 1/2" in by_type["Ready"]["message"]
    assert by_type["Progressing"]["status"] == "True"
    done = {r: Replicas(2, 2, 2) for r in ROLES}
    second = {
        c["type"]: c for c in conditions(first, generation=3, replicas=done, problems=[], at="T2")
    }
    assert second["Ready"] == {**second["Ready"], "status": "True", "lastTransitionTime": "T2"}
    assert second["Degraded"]["lastTransitionTime"] == "T1", "unchanged status keeps its time"
    blocked = conditions(
        [], generation=4, replicas=done, problems=[Problem("SecretMissing", "create it")], at="T3"
    )
    assert {c["type"]: (c["status"], c["reason"]) for c in blocked} == {
        "Ready": ("False", "SecretMissing"),
        "Progressing": ("False", "SecretMissing"),
        "Degraded": ("True", "SecretMissing"),
    }
    assert all(c["observedGeneration"] == 4 for c in blocked)


def test_a_deployment_the_controller_has_not_seen_yet_is_not_updated() -> None:
    stale = {
        "metadata": {"generation": 5},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 4, "readyReplicas": 2, "updatedReplicas": 2},
    }
    assert replicas_of(stale) == Replicas(desired=2, ready=2, updated=0)
    assert not replicas_of(stale).done
