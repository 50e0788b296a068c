"""The ``RecoEngine`` CustomResourceDefinition, generated from the spec model.

``python -m reco_operator.crd`` prints it; ``make crd`` writes it to
``manifests/crd/recoengines.recoengine.io.yaml``, the one file the Helm chart and the plain
manifests both install. ``tests/operator/test_crd.py`` fails when the committed file
differs from what this writes, so the CRD, the operator and the engine's settings model
cannot drift apart.

Kubernetes wants a *structural* schema: every node typed, no ``$ref``, no ``anyOf`` of
alternatives, ``properties`` and ``additionalProperties`` never together. Pydantic's JSON
Schema is turned into one here: references inlined, optional fields unwrapped, ``int | str``
made ``x-kubernetes-int-or-string``, JSON Schema 2020's numeric ``exclusiveMinimum`` turned
into OpenAPI 3.0's boolean form, and ``default: {}`` put on sub-objects so the API server
fills in their own defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from reco.settings import EngineSettings
from reco_operator import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from reco_operator.spec import ROLES, SPEC_SETTINGS, RecoEngineSpec, engine_key

CRD_PATH = Path("manifests/crd/recoengines.recoengine.io.yaml")

_DROP = {"title", "additionalProperties", "$defs"}


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A structural OpenAPI v3 schema node for a pydantic JSON Schema node."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # the field's own description and default win
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if {o.get("type") for o in options} == {"integer", "string"}:
            node["x-kubernetes-int-or-string"] = True
        elif len(options) == 1:
            return structural({**options[0], **node}, defs)
        else:
            raise ValueError(f"no structural form for anyOf {options}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: structural(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" not in node:
        out["additionalProperties"] = structural(extra, defs)
    if extra is True and "properties" not in node:
        out["x-kubernetes-preserve-unknown-fields"] = True
    _default_sub_objects(out)
    return out


def _default_sub_objects(node: dict[str, Any]) -> None:
    """``default: {}`` on required-by-default sub-objects (those with a default factory),
    so that the API server applies their fields' defaults even when the user left the
    whole object out. Optional objects (``X | None``) stay absent."""
    required = set(node.get("required", ()))
    for name, prop in node.get("properties", {}).items():
        optional = prop.pop("_optional", False)
        is_object = prop.get("type") == "object" and "properties" in prop
        if is_object and "default" not in prop and not optional and name not in required:
            prop["default"] = {}


def _mark_optional(schema: dict[str, Any]) -> None:
    """Remember which object fields are ``X | None`` before the unions are unwrapped."""
    for node in [schema, *schema.get("$defs", {}).values()]:
        for prop in node.get("properties", {}).values():
            options = prop.get("anyOf", [])
            if any(o.get("type") == "null" for o in options):
                prop["_optional"] = True


def engine_schema() -> dict[str, Any]:
    """``spec.engine``: the engine's settings model under camelCase names."""
    source = EngineSettings.model_json_schema()
    defs = source.get("$defs", {})
    properties = {
        engine_key(name): structural(prop, defs)
        for name, prop in source["properties"].items()
        if name not in SPEC_SETTINGS
    }
    for prop in properties.values():
        if prop.get("type") == "object" and "properties" in prop:
            prop["default"] = {}
    weights = properties["eventWeights"]
    weights["default"] = EngineSettings.model_fields["event_weights"].get_default(
        call_default_factory=True
    )
    weights["minProperties"] = 1
    weights["additionalProperties"]["minimum"] = 0
    weights["x-kubernetes-validations"] = [
        {
            "rule": "self.all(t, t.matches('^[a-z][a-z0-9_]{0,31}$'))",
            "message": (
                "event types are lower-case names: a letter, then letters, digits or _, "
                "32 characters at most"
            ),
        }
    ]
    return {
        "type": "object",
        "description": (
            "Engine settings (the RECO_* variables of docs/operations.md, in camelCase; "
            "durations in seconds). A change rolls only the roles that read the setting."
        ),
        "default": {},
        "properties": properties,
    }


TRAFFIC_SLACK = 1e-9
"""What the experiments' traffic may add up to above 1 (float sums: 0.1 + 0.2 + 0.7), as the
engine allows."""


def _experiment_rules(experiments: dict[str, Any]) -> None:
    """``spec.experiments``: the engine's models (``reco.settings.Experiment``) give the
    fields and their bounds (2 variants at least, names, traffic in (0, 1]); what the engine
    checks across items the API server checks too: names unique (lists of type map, keyed
    by name: the server refuses a repeated key) and the traffic shares adding up to 1 at
    most (a CEL rule)."""
    experiments["x-kubernetes-list-type"] = "map"
    experiments["x-kubernetes-list-map-keys"] = ["name"]
    experiments["x-kubernetes-validations"] = [
        {
            "rule": f"self.map(e, e.traffic).sum() <= {1 + TRAFFIC_SLACK!r}",
            "message": (
                "the experiments' traffic adds up to more than 1: each subject is in one "
                "experiment at most, so their shares must fit in 1"
            ),
        }
    ]
    variants = experiments["items"]["properties"]["variants"]
    variants["x-kubernetes-list-type"] = "map"
    variants["x-kubernetes-list-map-keys"] = ["name"]


def spec_schema() -> dict[str, Any]:
    source = RecoEngineSpec.model_json_schema(by_alias=True)
    _mark_optional(source)
    schema = structural(source, source.get("$defs", {}))
    schema.pop("description", None)
    schema["properties"]["engine"] = engine_schema()
    _experiment_rules(schema["properties"]["experiments"])
    return schema


def _component_status() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "desired": {"type": "integer", "description": "Replicas asked for."},
            "ready": {"type": "integer", "description": "Replicas ready."},
            "updated": {"type": "integer", "description": "Replicas on the newest revision."},
        },
    }


def _scaling_status(role: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "currentReplicas": {"type": "integer", "description": "Replicas the autoscaler saw."},
        "desiredReplicas": {"type": "integer", "description": "Replicas it asks for."},
        "minReplicas": {"type": "integer"},
        "maxReplicas": {"type": "integer", "description": "After the partition cap."},
        "lastScaleTime": {"type": "string", "format": "date-time"},
        "message": {"type": "string", "description": "Why a metric could not be read."},
    }
    if role == "processor":
        properties["lag"] = {
            "type": "integer",
            "description": "The consumer group's lag (records) the autoscaler last saw.",
        }
    else:
        properties["latencySeconds"] = {
            "type": "number",
            "description": "The latency quantile the autoscaler last saw.",
        }
        properties["requestsPerSecond"] = {
            "type": "number",
            "description": "Recommendation requests per second and pod it last saw.",
        }
    return {"type": "object", "properties": properties}


def _autoscaling_status() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The autoscalers at work: absent when no role is autoscaled.",
        "properties": {
            "provider": {"type": "string", "enum": ["KEDA", "HPA"]},
            "processor": _scaling_status("processor"),
            "api": _scaling_status("api"),
        },
    }


def status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {
                "type": "string",
                "description": "Ready, Progressing, Degraded, or AutoscalingCapped.",
            },
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "description": "CamelCase cause."},
            "message": {"type": "string", "description": "What it means, for people."},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "description": "The spec generation the operator last acted on.",
            },
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "components": {
                "type": "object",
                "properties": {role: _component_status() for role in ROLES},
            },
            "replicas": {
                "type": "object",
                "description": "ready/desired per role, as kubectl get shows it.",
                "properties": {role: {"type": "string"} for role in ROLES},
            },
            "image": {"type": "string", "description": "The engine image the roles run."},
            "autoscaling": _autoscaling_status(),
            "topic": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "partitions": {
                        "type": "integer",
                        "description": "Partitions the topic has on the broker.",
                    },
                },
            },
        },
    }


def printer_columns() -> list[dict[str, Any]]:
    columns: list[dict[str, Any]] = [
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
    ]
    for role in ("ingest", "processor", "api", "archiver"):
        columns.append(
            {
                "name": role.capitalize() if role != "api" else "API",
                "type": "string",
                "jsonPath": f".status.replicas.{role}",
                "description": f"{role} pods ready/desired",
            }
        )
    columns += [
        {"name": "Lag", "type": "integer", "jsonPath": ".status.autoscaling.processor.lag",
         "description": "consumer lag the processor's autoscaler last saw"},
        {"name": "Latency", "type": "number", "jsonPath": ".status.autoscaling.api.latencySeconds",
         "description": "api latency (s) its autoscaler last saw", "priority": 1},
        {"name": "Partitions", "type": "integer", "jsonPath": ".status.topic.partitions",
         "priority": 1},
        {"name": "Image", "type": "string", "jsonPath": ".status.image", "priority": 1},
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]  # fmt: skip
    return columns


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "reco-engine"},
            "annotations": {"recoengine.io/generated-by": "python -m reco_operator.crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "reco"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns(),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "A real-time recommendation engine: ingest, processor, "
                                "archiver and api over Kafka, Redis and PostgreSQL."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = (
    "# Generated by `python -m reco_operator.crd` (make crd) from the operator's spec model\n"
    "# and the engine's settings model. Do not edit: change the models and regenerate.\n"
)


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-trees out in full: no YAML anchors in a Kubernetes manifest."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    return HEADER + yaml.dump(crd(), Dumper=_Dumper, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or write the RecoEngine CRD.")
    parser.add_argument("--write", type=Path, help=f"write it here (e.g. {CRD_PATH})")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
