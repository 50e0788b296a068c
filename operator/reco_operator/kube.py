"""The operator's calls to the Kubernetes API (the official client), in one place.

Children are written with server-side apply under one field manager (``reco-operator``),
forcing conflicts: the operator owns the fields it sets and takes them back from whoever
edited them by hand, while fields it never sets (an autoscaler's replicas, a mesh's
annotations) stay with their owners.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from reco_operator import FIELD_MANAGER, GROUP, KIND, PLURAL, VERSION
from reco_operator.builders import CHILD_KINDS, Manifest

log = logging.getLogger(__name__)

TIMEOUT_S = 30
"""Every API call is bounded: a handler never waits on a silent API server for long."""
HANDOFF_MANAGER = f"{FIELD_MANAGER}-handoff"


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    created: bool
    changed: bool


@dataclass(frozen=True)
class Child:
    api_version: str
    kind: str
    name: str


class Cluster:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or client.ApiClient()
        self._dynamic: DynamicClient | None = None
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.extensions = client.ApiextensionsV1Api(self.api)

    @property
    def dynamic(self) -> DynamicClient:
        # Discovery is a round trip per API group: done once, when first needed.
        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    # -- children --------------------------------------------------------------------------

    def apply(self, manifest: Manifest) -> Applied:
        """Server-side apply; says whether the object was created or changed."""
        kind, meta = manifest["kind"], manifest["metadata"]
        resource = self._resource(manifest["apiVersion"], kind)
        before = self._get(resource, meta["name"], meta["namespace"])
        after = resource.server_side_apply(
            body=manifest,
            namespace=meta["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            _request_timeout=TIMEOUT_S,
        )
        version = after.metadata.resourceVersion
        return Applied(
            kind=kind,
            name=meta["name"],
            created=before is None,
            changed=before is None or before.metadata.resourceVersion != version,
        )

    def _get(self, resource: Any, name: str, namespace: str) -> Any:
        try:
            return resource.get(name=name, namespace=namespace, _request_timeout=TIMEOUT_S)
        except NotFoundError:
            return None

    def owned(self, namespace: str, instance: str, uid: str) -> list[Child]:
        """The children of one RecoEngine that exist now, of every kind it may create."""
        found: list[Child] = []
        selector = (
            f"app.kubernetes.io/instance={instance},app.kubernetes.io/managed-by={FIELD_MANAGER}"
        )
        for group, version, kind in CHILD_KINDS:
            api_version = f"{group}/{version}" if group else version
            try:
                resource = self._resource(api_version, kind)
                items = resource.get(
                    namespace=namespace, label_selector=selector, _request_timeout=TIMEOUT_S
                ).items
            except ResourceNotFoundError:
                continue  # the kind is not installed (ServiceMonitor without its CRD)
            except NotFoundError:
                # Discovery remembered a kind whose CRD is gone since (KEDA uninstalled):
                # nothing of it can exist; discover afresh next time.
                self.dynamic.resources.invalidate_cache()
                continue
            for item in items:
                owners = item.metadata.ownerReferences or []
                if any(o.uid == uid for o in owners):
                    found.append(Child(api_version, kind, item.metadata.name))
        return found

    def delete(self, namespace: str, child: Child) -> None:
        resource = self._resource(child.api_version, child.kind)
        with contextlib.suppress(NotFoundError):
            resource.delete(
                name=child.name,
                namespace=namespace,
                body={"propagationPolicy": "Background"},
                _request_timeout=TIMEOUT_S,
            )

    def release_replicas(self, manifest: Manifest) -> bool:
        """Hand a Deployment's ``spec.replicas`` to an autoscaler without a jump.

        Applying a Deployment without a field the operator owned alone would remove the
        field, and the API server would default it to 1 before the autoscaler acts. So
        the current value is first applied by a second manager (HANDOFF_MANAGER): the
        operator's next apply then drops only its own claim and the value stays, until the
        autoscaler scales (the HPA controller's updates take the field over). Switching
        autoscaling off, the operator's forced apply takes it back. True when it handed
        the field over."""
        meta = manifest["metadata"]
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        current = self._get(resource, meta["name"], meta["namespace"])
        if current is None:
            return False
        body = current.to_dict()
        owners = [
            m
            for m in body["metadata"].get("managedFields") or []
            if "f:replicas" in ((m.get("fieldsV1") or {}).get("f:spec") or {})
        ]
        if [m.get("manager") for m in owners] != [FIELD_MANAGER]:
            return False  # not the operator's alone: dropping its claim keeps the value
        resource.server_side_apply(
            body={
                "apiVersion": manifest["apiVersion"],
                "kind": manifest["kind"],
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": {"replicas": body["spec"]["replicas"]},
            },
            namespace=meta["namespace"],
            field_manager=HANDOFF_MANAGER,
            force_conflicts=True,
            _request_timeout=TIMEOUT_S,
        )
        return True

    def autoscalers(self, namespace: str, instance: str) -> dict[str, dict[str, Any]]:
        """The HorizontalPodAutoscalers of a RecoEngine by name: the operator's own and the
        ones KEDA made for its ScaledObjects (KEDA copies their labels)."""
        resource = self._resource("autoscaling/v2", "HorizontalPodAutoscaler")
        items = resource.get(
            namespace=namespace,
            label_selector=f"app.kubernetes.io/instance={instance},"
            f"app.kubernetes.io/managed-by={FIELD_MANAGER}",
            _request_timeout=TIMEOUT_S,
        ).items
        return {item.metadata.name: item.to_dict() for item in items}

    def deployments(self, namespace: str, instance: str) -> dict[str, dict[str, Any]]:
        """The RecoEngine's Deployments by role, as plain dicts."""
        items = self.apps.list_namespaced_deployment(
            namespace,
            label_selector=f"app.kubernetes.io/instance={instance},"
            f"app.kubernetes.io/managed-by={FIELD_MANAGER}",
            _request_timeout=TIMEOUT_S,
        ).items
        out: dict[str, dict[str, Any]] = {}
        for item in items:
            labels = (item.metadata.labels if item.metadata else None) or {}
            role = labels.get("app.kubernetes.io/component")
            if role:
                out[role] = self.api.sanitize_for_serialization(item)
        return out

    # -- what a spec references -----------------------------------------------------------------

    def secrets(self, namespace: str, names: set[str]) -> dict[str, dict[str, str]]:
        """Decoded data of the named Secrets; a missing one is left out."""
        out: dict[str, dict[str, str]] = {}
        for name in sorted(names):
            try:
                secret = self.core.read_namespaced_secret(
                    name, namespace, _request_timeout=TIMEOUT_S
                )
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            out[name] = {
                key: base64.b64decode(value).decode("utf-8", "replace")
                for key, value in (secret.data or {}).items()
            }
        return out

    def crd_installed(self, name: str) -> bool:
        try:
            self.extensions.read_custom_resource_definition(name, _request_timeout=TIMEOUT_S)
        except ApiException as exc:
            if exc.status in (403, 404):
                return False
            raise
        return True

    # -- the RecoEngine itself -------------------------------------------------------------------

    def engine(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body = cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _request_timeout=TIMEOUT_S
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    def engines(self, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every RecoEngine in ``namespaces`` (none: in every namespace)."""
        if not namespaces:
            listed = self.custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, _request_timeout=TIMEOUT_S
            )
            return list(cast(dict[str, Any], listed)["items"])
        out: list[dict[str, Any]] = []
        for namespace in namespaces:
            listed = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _request_timeout=TIMEOUT_S
            )
            out += cast(dict[str, Any], listed)["items"]
        return out

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the RecoEngine (what ``kubectl describe`` lists). Posted
        here rather than through kopf, whose posting works only inside its handlers: the
        drift repair runs on a thread of its own. A failure to post is only logged."""
        meta = body["metadata"]
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
                resource_version=meta.get("resourceVersion"),
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component=FIELD_MANAGER),
            reporting_component=FIELD_MANAGER,
            reporting_instance=socket.gethostname(),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(meta["namespace"], event, _request_timeout=TIMEOUT_S)
        except ApiException as exc:
            log.warning(
                "event %s on %s/%s not posted: %s",
                reason,
                meta["namespace"],
                meta["name"],
                exc.reason,
            )

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
                _request_timeout=TIMEOUT_S,
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise
