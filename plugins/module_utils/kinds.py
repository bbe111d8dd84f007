"""API resource types, and workload kinds as data: every per-kind fact the engine, the controller, RBAC and
the docs rely on. Pure data: no import of the kubernetes client, so argument specs can read it.

Adding a kind is one ``Kind(...)`` here (plus its tests): discovery, the
rewrite patch, the rollout wait, the controller's ``--kinds`` choices, the
modules' ``kinds`` choices and the ClusterRole rules all read these
descriptions; a test fails when deploy/ or a doc disagrees with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """An API resource type: ``Kind`` name, ``group/version`` and plural path segment."""

    name: str
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The request path of the collection (all namespaces when ``namespace`` is None) or of one object."""
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [root]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        return "/".join(parts)


# What a workload controller needs on its kinds: read them, watch them, and patch images in.
WORKLOAD_VERBS: Final = ("get", "list", "watch", "patch")


@dataclass(frozen=True)
class Rollout:
    """Where a kind's status says how far a rollout got, as ``kubectl rollout status`` reads it.

    ``desired`` is a path in the object (its default applies when the field is
    absent, as the API server defaults it); the others are ``status`` fields.
    """

    desired: tuple[str, ...]
    desired_default: int
    updated: str
    total: str
    ready: str

    def pending(self, obj: Mapping[str, Any], generation: int | None) -> str | None:
        """Why the rollout of ``obj`` (written at ``generation``) is not complete yet, or None when it is.

        Complete: the controller observed the write, every wanted pod runs the
        new template, no old pod is left, and the new pods are available.
        """
        metadata, status = _mapping(obj.get("metadata")), _mapping(obj.get("status"))
        wanted = max(generation or 0, metadata.get("generation") or 0)
        if (status.get("observedGeneration") or 0) < wanted:
            return f"its controller has not observed generation {wanted} yet"
        desired = _walk(obj, self.desired)
        desired = self.desired_default if desired is None else desired
        updated, total, ready = (status.get(name) or 0 for name in (self.updated, self.total, self.ready))
        if updated < desired:
            return f"{updated} of {desired} pod(s) run the new template"
        if total > updated:
            return f"{total - updated} old pod(s) still to be replaced"
        if ready < desired:
            return f"{ready} of {desired} new pod(s) ready"
        return None


@dataclass(frozen=True)
class Kind(Resource):
    """A workload kind: where its pod spec lives and how the engine may treat it.

    ``skipped_when_owned``: an object of this kind with a controller owner is
    left to that owner (a ReplicaSet to its Deployment). ``template_immutable``:
    the API server refuses image changes after creation (a Job).
    ``pull_secrets_mutable``: ``imagePullSecrets`` may be added after creation
    (not on a bare Pod). ``rollout``: how to wait for pods to run a rewrite
    (None: writing the template starts no rollout). ``watched_by_default``: in
    the controller's default ``--kinds``.
    """

    pod_spec_path: tuple[str, ...] = field(kw_only=True)
    skipped_when_owned: bool = field(default=False, kw_only=True)
    template_immutable: bool = field(default=False, kw_only=True)
    pull_secrets_mutable: bool = field(default=True, kw_only=True)
    rollout: Rollout | None = field(default=None, kw_only=True)
    watched_by_default: bool = field(default=False, kw_only=True)

    @property
    def api_group(self) -> str:
        """The API group, ``""`` for the core group, as RBAC rules name it."""
        return self.api_version.rpartition("/")[0]

    def pod_spec(self, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The pod spec inside ``obj``, or None when it has none there."""
        node = _walk(obj, self.pod_spec_path)
        return node if isinstance(node, Mapping) else None

    def at_pod_spec(self, fragment: Mapping[str, Any]) -> dict[str, Any]:
        """An object holding ``fragment`` where this kind keeps its pod spec (the shape of a patch)."""
        node: dict[str, Any] = dict(fragment)
        for key in reversed(self.pod_spec_path):
            node = {key: node}
        return node


_TEMPLATE: Final = ("spec", "template", "spec")
_REPLICAS: Final = ("spec", "replicas")
KINDS: Final[Mapping[str, Kind]] = {
    kind.name: kind
    for kind in (
        Kind("Deployment", "apps/v1", "deployments", pod_spec_path=_TEMPLATE, watched_by_default=True,
             rollout=Rollout(_REPLICAS, 1, "updatedReplicas", "replicas", "availableReplicas")),
        Kind("DaemonSet", "apps/v1", "daemonsets", pod_spec_path=_TEMPLATE, watched_by_default=True,
             rollout=Rollout(("status", "desiredNumberScheduled"), 0, "updatedNumberScheduled",
                             "desiredNumberScheduled", "numberAvailable")),
        Kind("StatefulSet", "apps/v1", "statefulsets", pod_spec_path=_TEMPLATE, watched_by_default=True,
             rollout=Rollout(_REPLICAS, 1, "updatedReplicas", "replicas", "readyReplicas")),
        Kind("CronJob", "batch/v1", "cronjobs", pod_spec_path=("spec", "jobTemplate", *_TEMPLATE),
             watched_by_default=True),
        # Its pods keep the image they started with: a new template reaches only pods created afterwards.
        Kind("ReplicationController", "v1", "replicationcontrollers", pod_spec_path=_TEMPLATE,
             watched_by_default=True),
        Kind("Job", "batch/v1", "jobs", pod_spec_path=_TEMPLATE, skipped_when_owned=True, template_immutable=True),
        Kind("ReplicaSet", "apps/v1", "replicasets", pod_spec_path=_TEMPLATE, skipped_when_owned=True),
        Kind("Pod", "v1", "pods", pod_spec_path=("spec",), skipped_when_owned=True, pull_secrets_mutable=False),
    )
}
DEFAULT_WATCHED: Final = tuple(name for name, kind in KINDS.items() if kind.watched_by_default)


def cluster_role_rules(kinds: Iterable[Kind]) -> list[dict[str, Any]]:
    """The ClusterRole rules that let a controller reconcile ``kinds``: one rule per API group."""
    by_group: dict[str, list[str]] = {}
    for kind in kinds:
        by_group.setdefault(kind.api_group, []).append(kind.plural)
    return [{"apiGroups": [group], "resources": resources, "verbs": list(WORKLOAD_VERBS)}
            for group, resources in by_group.items()]


def _walk(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
