"""The chart without a cluster: lint, every ci/ scenario rendered, values documented and
typed, readable refusals, least-privilege RBAC, the laptop wiring, the CRD symlink."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from reco_operator.autoscaling import LAG_METRIC, REQUESTS_METRIC, latency_metric
from reco_operator.spec import LATENCY_QUANTILES
from tests.chart.conftest import (
    CHART,
    CI_FILES,
    CI_IDS,
    CRD_FILE,
    Helm,
    documents,
    find,
    one,
)

pytestmark = pytest.mark.chart

WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]
# The operator's rights as its contract states them (namespaced part), rule by rule.
NAMESPACED_RULES = [
    (["recoengine.io"], ["recoengines"], ["get", "list", "watch", "patch", "update"]),
    (["recoengine.io"], ["recoengines/status"], ["get", "patch", "update"]),
    ([""], ["configmaps", "services"], WRITE),
    (["apps"], ["deployments"], WRITE),
    (["policy"], ["poddisruptionbudgets"], WRITE),
    (["batch"], ["cronjobs"], WRITE),
    (["networking.k8s.io"], ["networkpolicies"], WRITE),
    (["monitoring.coreos.com"], ["servicemonitors"], WRITE),
    (["autoscaling"], ["horizontalpodautoscalers"], WRITE),
    (["keda.sh"], ["scaledobjects", "triggerauthentications"], WRITE),
    ([""], ["secrets"], ["get"]),
    ([""], ["events"], ["create", "patch"]),
    (["events.k8s.io"], ["events"], ["create", "patch"]),
]
CRD_RULE = (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"])
NAMESPACES_RULE = ([""], ["namespaces"], ["list", "watch"])


def _rules(role: dict[str, Any]) -> list[tuple[list[str], list[str], list[str]]]:
    return [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]]


@pytest.mark.parametrize("values", [None, *CI_FILES], ids=["chart-defaults", *CI_IDS])
def test_helm_lint_strict(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    done = helm.run(*args, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", CI_FILES, ids=CI_IDS)
def test_every_ci_scenario_renders(helm: Helm, values: Path) -> None:
    # helm lint reports a template's `fail` as [INFO] and passes: only a render catches a
    # refusal of validateValues.
    docs = documents(helm.template("-f", str(values)))
    operator = one(docs, "Deployment", "reco-reco-engine-operator")
    assert operator["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "-m",
        "reco_operator",
    ]
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "reco-engine" for d in docs)


def test_the_defaults_are_the_crd_and_a_cluster_wide_operator(helm: Helm) -> None:
    docs = documents(helm.template())
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--no-leader-election" not in args
    assert "--namespace" not in args
    # The Lease is the release's (its Role, below, lets it update that one only): two
    # releases in one namespace elect apart.
    assert args[args.index("--lease-name") + 1] == deployment["metadata"]["name"]
    assert pod["containers"][0]["image"] == "ghcr.io/reco-engine/reco-engine-operator:0.1.0"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in pod["containers"][0]["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    probes = [pod["containers"][0][p]["httpGet"] for p in ("livenessProbe", "readinessProbe")]
    assert all(p == {"path": "/healthz", "port": "health"} for p in probes)
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # Without --include-crds helm leaves crds/ out; with it the CRD is the manifests/ file.
    crds = documents(helm.template("--include-crds"))
    assert one(crds, "CustomResourceDefinition") == yaml.safe_load(CRD_FILE.read_text())


def test_cluster_wide_rbac_is_the_contract_and_nothing_more(helm: Helm) -> None:
    docs = documents(helm.template())
    cluster_role = one(docs, "ClusterRole")
    assert _rules(cluster_role) == [*NAMESPACED_RULES, NAMESPACES_RULE, CRD_RULE]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "reco-reco-engine-operator", "namespace": "reco"}
    ]
    lease = one(docs, "Role", "reco-reco-engine-operator-leader-election")
    assert lease["metadata"]["namespace"] == "reco"
    assert lease["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["reco-reco-engine-operator"],  # the Lease --lease-name gives
            "verbs": ["get", "update"],
        },
    ]


def test_watch_namespaces_gives_roles_there_and_no_cluster_wide_writes(helm: Helm) -> None:
    docs = documents(helm.template("--set", "watchNamespaces={a,b}"))
    roles = {r["metadata"]["namespace"]: r for r in find(docs, "Role", "reco-reco-engine-operator")}
    assert set(roles) == {"a", "b"}
    assert all(_rules(role) == NAMESPACED_RULES for role in roles.values())
    bindings = find(docs, "RoleBinding", "reco-reco-engine-operator")
    assert {b["metadata"]["namespace"] for b in bindings} == {"a", "b"}
    assert all(b["subjects"][0]["namespace"] == "reco" for b in bindings)
    # Cluster-wide: reading CRDs, nothing else (no namespaces, no writes).
    cluster_roles = find(docs, "ClusterRole")
    assert [r["metadata"]["name"] for r in cluster_roles] == ["reco-reco-engine-operator-crds"]
    assert _rules(cluster_roles[0]) == [CRD_RULE]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert " ".join(args).endswith("--namespace a --namespace b")


def test_rbac_create_false_renders_no_rbac(helm: Helm) -> None:
    docs = documents(helm.template("--set", "rbac.create=false"))
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io")]


def _pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] == "Pod":
            specs.append((doc["metadata"]["name"], doc["spec"]))
        elif doc["kind"] in ("Deployment", "StatefulSet"):
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
    return specs


@pytest.mark.parametrize("values", CI_FILES, ids=CI_IDS)
def test_every_pod_is_restricted_with_resources(helm: Helm, values: Path) -> None:
    """The restricted Pod Security Standard's fields, set explicitly (the cluster tests
    check that the API server agrees), and resources on every container."""
    for name, spec in _pod_specs(documents(helm.template("-f", str(values)))):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name


def test_the_laptop_recoengine_is_wired_to_the_laptop_dependencies(helm: Helm) -> None:
    docs = documents(helm.template("-f", str(CHART / "ci" / "laptop-values.yaml")))
    spec = one(docs, "RecoEngine", "shop")["spec"]
    services = {s["metadata"]["name"]: s for s in find(docs, "Service")}
    host, port = spec["kafka"]["bootstrapServers"].split(":")
    assert host in services
    assert int(port) == services[host]["spec"]["ports"][0]["port"]
    # The spec's own settings survive the filling-in.
    assert spec["kafka"]["partitions"] == 3
    secret = one(docs, "Secret")
    for backend, key in (("redis", "redis-url"), ("postgres", "database-url")):
        assert spec[backend]["urlSecretRef"] == {"name": secret["metadata"]["name"], "key": key}
        url = secret["stringData"][key]
        host_port = url.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.split(":")
        assert services[host]["spec"]["ports"][0]["port"] == int(port), url
        assert secret["stringData"]["password"] in url
    # Redis and PostgreSQL read the same password from the same Secret.
    for workload in (
        one(docs, "Deployment", "reco-reco-engine-redis"),
        one(docs, "StatefulSet", "reco-reco-engine-postgresql"),
    ):
        env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e]
        assert refs == [{"name": secret["metadata"]["name"], "key": "password"}]
    # helm test reaches the RecoEngine's Services by the names the operator gives them.
    test_env = {e["name"]: e.get("value") for e in one(docs, "Pod")["spec"]["containers"][0]["env"]}
    assert test_env["RECO_TEST_INGEST_URL"] == "http://shop-ingest:8081"
    assert test_env["RECO_TEST_API_URL"] == "http://shop-api:8080"


def test_an_explicit_backend_wins_over_the_laptop_one(helm: Helm) -> None:
    docs = documents(
        helm.template(
            "-f",
            str(CHART / "ci" / "laptop-values.yaml"),
            "--set",
            "recoEngine.spec.kafka.bootstrapServers=broker.example:9092",
        )
    )
    assert one(docs, "RecoEngine")["spec"]["kafka"]["bootstrapServers"] == "broker.example:9092"


def test_config_changes_roll_the_pods_they_feed(helm: Helm) -> None:
    def annotations(*args: str) -> dict[str, dict[str, str]]:
        docs = documents(helm.template("-f", str(CHART / "ci" / "laptop-values.yaml"), *args))
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"].get("annotations", {})
            for d in docs
            if d["kind"] in ("Deployment", "StatefulSet")
            and "operator" not in d["metadata"]["name"]
        }

    before = annotations("--set", "dev.password=first")
    after = annotations("--set", "dev.password=second")
    assert set(before) == {
        "reco-reco-engine-kafka",
        "reco-reco-engine-redis",
        "reco-reco-engine-postgresql",
    }
    for name in ("reco-reco-engine-redis", "reco-reco-engine-postgresql"):
        assert before[name]["checksum/dev"] != after[name]["checksum/dev"], name
    # The Kafka broker's configuration is release-specific: another namespace is another
    # advertised listener, hence another checksum.
    kafka = annotations("--namespace", "elsewhere")["reco-reco-engine-kafka"]
    assert kafka["checksum/config"] != before["reco-reco-engine-kafka"]["checksum/config"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "operator.leaderElection.enabled=false"],
            "operator.replicaCount is 2 with operator.leaderElection.enabled=false",
        ),
        (
            ["--set", "recoEngine.create=true"],
            "recoEngine.create=true needs Kafka: set recoEngine.spec.kafka.bootstrapServers",
        ),
        (
            ["--set", "recoEngine.create=true,dev.kafka.enabled=true,dev.redis.enabled=true"],
            "recoEngine.create=true needs PostgreSQL",
        ),
        (
            ["--set", "serviceAccount.create=false"],
            "serviceAccount.create=false needs serviceAccount.name",
        ),
        (
            ["-f", str(CHART / "ci" / "laptop-values.yaml"), "--set", "watchNamespaces={a}"],
            "which watchNamespaces (a) leaves out",
        ),
        (["--set", "operator.replicas=3"], "additional properties 'replicas' not allowed"),
        (["--set", "operator.logLevel=loud"], "operator/logLevel"),
        (["--set", "dev.password=p@ss"], "dev/password"),
        (["--set", "watchNamespaces={Not_A_Namespace}"], "watchNamespaces/0"),
    ],
    ids=[
        "replicas-without-leader-election",
        "recoengine-without-kafka",
        "recoengine-without-postgres",
        "rbac-for-the-default-serviceaccount",
        "recoengine-outside-the-watched-namespaces",
        "typo",
        "log-level",
        "password-that-breaks-urls",
        "namespace-name",
    ],
)
def test_bad_values_are_refused_with_what_to_change(
    helm: Helm, args: list[str], message: str
) -> None:
    done = helm.run("template", "reco", str(CHART), "--namespace", "reco", *args, check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_the_crd_is_one_file_linked_into_the_chart_and_packaged_as_content(
    helm: Helm, tmp_path: Path
) -> None:
    link = CHART / "crds" / CRD_FILE.name
    assert link.is_symlink()
    assert link.resolve() == CRD_FILE.resolve()
    done = helm.run("package", str(CHART), "--destination", str(tmp_path))
    # helm follows the link and says so on stderr.
    assert "found symbolic link" in done.stderr
    with tarfile.open(tmp_path / "reco-engine-0.1.0.tgz") as archive:
        member = archive.getmember(f"reco-engine/crds/{CRD_FILE.name}")
        assert member.isfile()  # the content, not a link that would dangle elsewhere
        packaged = archive.extractfile(member)
        assert packaged is not None
        assert packaged.read() == CRD_FILE.read_bytes()
        names = archive.getnames()
    assert "reco-engine/values.schema.json" in names
    assert "reco-engine/files/helm-test.py" in names
    assert any(name.startswith("reco-engine/ci/") for name in names)


# -- values.yaml is documented and typed ----------------------------------------------------


def _value_lines() -> list[tuple[tuple[str, ...], list[str]]]:
    """(path, comment lines above it) for every key of values.yaml, read line by line, since
    a YAML parser drops comments."""
    found: list[tuple[tuple[str, ...], list[str]]] = []
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        if not stripped:
            comments = []
            continue
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):", line)
        if match is None:  # a list item or a continuation of a block value
            comments = []
            continue
        indent, key = len(match[1]), match[2]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        found.append((tuple(k for _, k in stack), comments))
        comments = []
    return found


# Values whose content is a Kubernetes object (or free labels): documented as a whole.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "labels"}


def _leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node and not (path and path[-1] in PASSTHROUGH):
        return [leaf for key, value in node.items() for leaf in _leaves(value, (*path, key))]
    return [path]


def _schema_node(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = schema
    for key in path:
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        node = node["properties"][key]
    if "$ref" in node:
        node = {**schema["definitions"][node["$ref"].rsplit("/", 1)[-1]], **node}
    return node


def test_every_value_has_a_helm_docs_comment() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    comments = dict(_value_lines())
    missing = [
        ".".join(leaf)
        for leaf in _leaves(values)
        if not any(c.startswith("# --") for c in comments.get(leaf, []))
    ]
    assert not missing, f"values without a `# --` comment: {missing}"


def test_every_value_is_typed_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    untyped = []
    for leaf in _leaves(values):
        try:
            node = _schema_node(schema, leaf)
        except KeyError:
            untyped.append(".".join(leaf))
            continue
        if "type" not in node and "anyOf" not in node:
            untyped.append(".".join(leaf))
    assert not untyped, f"values the schema does not type: {untyped}"


def test_the_metrics_adapter_rules_serve_the_names_the_operator_s_hpas_use(helm: Helm) -> None:
    assert not find(
        documents(helm.template()), "ConfigMap", "reco-reco-engine-metrics-adapter-rules"
    )
    rendered = helm.template(
        "--set", "metricsAdapter.rules.enabled=true",
        "--set", "metricsAdapter.rules.namespace=monitoring",
    )  # fmt: skip
    config = one(documents(rendered), "ConfigMap", "reco-reco-engine-metrics-adapter-rules")
    assert config["metadata"]["namespace"] == "monitoring"
    rules = yaml.safe_load(config["data"]["config.yaml"])
    served = {r["name"]["as"] for r in rules["rules"]}
    assert served == {latency_metric(q) for q in LATENCY_QUANTILES} | {REQUESTS_METRIC}
    (lag,) = rules["externalRules"]
    assert lag["name"]["as"] == LAG_METRIC
    assert "consumer_member_lag_records" in lag["seriesQuery"]
    p95 = next(r for r in rules["rules"] if r["name"]["as"] == latency_metric(0.95))
    assert p95["metricsQuery"].startswith("histogram_quantile(0.95, ")
