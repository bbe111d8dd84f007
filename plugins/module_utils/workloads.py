"""Workload kinds, what their pod specs say about images, and which workloads are ours to touch.

Discovery never raises on bad input: a container with an empty, missing or
malformed image is recorded on its workload (``Workload.problems``) so one odd
object cannot stop a cluster-wide run. API errors (403 on a LIST...) do raise.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError, Resource
from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    InvalidReference,
    parse_reference,
)

SECTIONS: Final = ("initContainers", "containers", "ephemeralContainers")
# Ephemeral containers are debugging aids added through their own subresource;
# their images are backed up but never rewritten.
REWRITABLE_SECTIONS: Final = ("initContainers", "containers")

ALWAYS_IGNORED_NAMESPACES: Final = frozenset({"kube-system"})
SKIP_ANNOTATION: Final = "imageclone.io/skip"
ARGOCD: Final = "argocd"
FLUX: Final = "flux"
ARGOCD_ANNOTATIONS: Final = ("argocd.argoproj.io/tracking-id",)
# Label tracking cannot be told apart from Helm's label of the same name; a
# false "argocd" only reports (and skips with skip_gitops), whereas a miss
# would let Argo CD silently revert the rewrite.
ARGOCD_LABELS: Final = ("argocd.argoproj.io/instance", "app.kubernetes.io/instance")
FLUX_LABELS: Final = ("kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name")
# Their controller owner (Deployment, CronJob, any controller) is the place to rewrite.
SKIPPED_WHEN_OWNED: Final = frozenset({"ReplicaSet", "Job", "Pod"})
NAMESPACE: Final = Resource("Namespace", "v1", "namespaces", namespaced=False)


@dataclass(frozen=True)
class Kind(Resource):
    """A workload kind: where its pod spec lives and whether that pod template can change.

    ``template_immutable`` marks kinds whose images the API server refuses to
    change after creation (a Job's ``spec.template``).
    """

    pod_spec_path: tuple[str, ...] = field(kw_only=True)
    template_immutable: bool = field(default=False, kw_only=True)


_TEMPLATE: Final = ("spec", "template", "spec")
KINDS: Final[Mapping[str, Kind]] = {
    kind.name: kind
    for kind in (
        Kind("Deployment", "apps/v1", "deployments", pod_spec_path=_TEMPLATE),
        Kind("DaemonSet", "apps/v1", "daemonsets", pod_spec_path=_TEMPLATE),
        Kind("StatefulSet", "apps/v1", "statefulsets", pod_spec_path=_TEMPLATE),
        Kind("CronJob", "batch/v1", "cronjobs", pod_spec_path=("spec", "jobTemplate", *_TEMPLATE)),
        Kind("Job", "batch/v1", "jobs", pod_spec_path=_TEMPLATE, template_immutable=True),
        Kind("ReplicaSet", "apps/v1", "replicasets", pod_spec_path=_TEMPLATE),
        Kind("Pod", "v1", "pods", pod_spec_path=("spec",)),
    )
}


@dataclass(frozen=True)
class ContainerImage:
    """One container's image as written; ``reference`` is its parse, ``problem`` why it has none."""

    section: str
    container: str
    image: str
    reference: ImageReference | None = field(init=False, compare=False, repr=False)
    problem: str | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        reference, problem = None, None
        if not self.container:
            problem = f"{self.section}: a container has no name"
        elif not self.image:
            problem = f"{self.label}: image is empty or missing"
        else:
            try:
                reference = parse_reference(self.image)
            except InvalidReference as error:
                problem = f"{self.label}: {error}"
        # Frozen dataclass: derived fields are set once, here.
        object.__setattr__(self, "reference", reference)
        object.__setattr__(self, "problem", problem)

    @property
    def label(self) -> str:
        """``section 'name'``, how messages name this container."""
        return f"{self.section} {self.container!r}"


@dataclass(frozen=True)
class Workload:
    """A workload object as read, with its images and who else manages it.

    ``owner`` is the controller ownerReference as ``Kind/name``; ``managed_by``
    is ``"argocd"``, ``"flux"`` or None; ``problems`` lists everything that
    keeps it from being rewritten safely (unreadable pod spec, bad images).
    ``raw`` is the object as the API returned it; treat it as read-only.
    """

    kind: Kind
    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    images: tuple[ContainerImage, ...]
    pull_secrets: tuple[str, ...]
    owner: str | None
    managed_by: str | None
    problems: tuple[str, ...]
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        """``Kind/namespace/name``, how messages name this workload."""
        return f"{self.kind.name}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Skipped:
    """An object discovery left alone, and why. A skipped namespace has kind ``Namespace``."""

    kind: str
    namespace: str
    name: str
    reason: str


@dataclass(frozen=True)
class DiscoveryResult:
    """Workloads to process, and everything skipped with a reason each."""

    workloads: tuple[Workload, ...]
    skipped: tuple[Skipped, ...]


def _pod_spec(kind: Kind, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    node: Any = obj
    for key in kind.pod_spec_path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def workload_from_object(kind: Kind, obj: Mapping[str, Any]) -> Workload:
    """Read ``obj`` as a workload of ``kind``; never raises on malformed content."""
    metadata = _mapping(obj.get("metadata"))
    spec = _pod_spec(kind, obj)
    images = _images(spec) if spec is not None else ()
    problems = [image.problem for image in images if image.problem] + _duplicate_names(images)
    if spec is None:
        problems.insert(0, f"no pod spec at {'.'.join(kind.pod_spec_path)}")
    return Workload(
        kind=kind,
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
        labels=_string_map(metadata.get("labels")),
        annotations=_string_map(metadata.get("annotations")),
        images=images,
        pull_secrets=_pull_secrets(spec or {}),
        owner=_controller_owner(metadata.get("ownerReferences")),
        managed_by=_gitops_manager(metadata),
        problems=tuple(problems),
        raw=obj,
    )


def _gitops_manager(metadata: Mapping[str, Any]) -> str | None:
    labels = _string_map(metadata.get("labels"))
    annotations = _string_map(metadata.get("annotations"))
    if any(key in annotations for key in ARGOCD_ANNOTATIONS) or any(key in labels for key in ARGOCD_LABELS):
        return ARGOCD
    if any(key in labels for key in FLUX_LABELS):
        return FLUX
    return None


def namespace_skip_reason(namespace: str, ignore_namespaces: Collection[str] = ()) -> str | None:
    """Why discovery leaves ``namespace`` alone (kube-system always), or None."""
    if namespace in ALWAYS_IGNORED_NAMESPACES:
        return f"namespace {namespace} is always ignored"
    if namespace in ignore_namespaces:
        return f"namespace {namespace} is ignored"
    return None


def skip_reason(
    workload: Workload, ignore_namespaces: Collection[str] = (), skip_gitops: bool = False
) -> str | None:
    """Why discovery leaves ``workload`` alone, or None when it is to be processed."""
    reason = namespace_skip_reason(workload.namespace, ignore_namespaces)
    if reason is not None:
        return reason
    if workload.annotations.get(SKIP_ANNOTATION, "").strip().lower() == "true":
        return f"opted out with annotation {SKIP_ANNOTATION}"
    if workload.owner and workload.kind.name in SKIPPED_WHEN_OWNED:
        return f"controlled by {workload.owner}, which is handled instead"
    if skip_gitops and workload.managed_by:
        return f"managed by {workload.managed_by} (skip_gitops)"
    return None


def discover(
    api: KubeApi,
    kinds: Iterable[Kind] = KINDS.values(),
    namespaces: Iterable[str] | None = None,
    ignore_namespaces: Iterable[str] = (),
    skip_gitops: bool = False,
) -> DiscoveryResult:
    """Every workload of ``kinds`` in ``namespaces`` (all when None) that is ours to process.

    Lists each kind once cluster-wide when ``namespaces`` is None, else once
    per kind and namespace; kube-system and ``ignore_namespaces`` are never
    listed when named explicitly, they are reported as skipped namespaces.
    """
    ignored = frozenset(ignore_namespaces)
    scopes, skipped = _scopes(namespaces, ignored)
    workloads: list[Workload] = []
    for kind in kinds:
        for scope in scopes:
            items = api.list(kind, scope)[0]
            for item in items:
                workload = workload_from_object(kind, item)
                reason = skip_reason(workload, ignored, skip_gitops)
                if reason is None:
                    workloads.append(workload)
                else:
                    skipped.append(Skipped(kind.name, workload.namespace, workload.name, reason))
    return DiscoveryResult(tuple(workloads), tuple(skipped))


def without_terminating_namespaces(api: KubeApi, found: DiscoveryResult) -> DiscoveryResult:
    """``found`` with the workloads of namespaces being deleted moved to ``skipped``.

    The namespace controller is deleting them: a rewrite would be wasted, and
    a pull Secret can no longer be created there. Costs one LIST of namespaces
    (none when nothing was found); a caller that may not list namespaces
    (403) gets ``found`` unchanged, as no namespace is known to be terminating.
    """
    if not found.workloads:
        return found
    try:
        namespaces = api.list(NAMESPACE)[0]
    except KubeApiError as error:
        if error.forbidden:
            return found
        raise
    terminating = {
        _mapping(item.get("metadata")).get("name")
        for item in namespaces
        if _mapping(item.get("status")).get("phase") == "Terminating"
    }
    kept = tuple(workload for workload in found.workloads if workload.namespace not in terminating)
    left = tuple(Skipped(workload.kind.name, workload.namespace, workload.name,
                         f"namespace {workload.namespace} is terminating")
                 for workload in found.workloads if workload.namespace in terminating)
    return DiscoveryResult(kept, found.skipped + left)


def _scopes(
    namespaces: Iterable[str] | None, ignored: Collection[str]
) -> tuple[list[str | None], list[Skipped]]:
    """The namespaces to list (None: all at once), and the named ones skipped outright."""
    if namespaces is None:
        return [None], []
    scopes: list[str | None] = []
    skipped = []
    for namespace in dict.fromkeys(namespaces):
        reason = namespace_skip_reason(namespace, ignored)
        if reason is None:
            scopes.append(namespace)
        else:
            skipped.append(Skipped("Namespace", namespace, namespace, reason))
    return scopes, skipped


def _images(spec: Mapping[str, Any]) -> tuple[ContainerImage, ...]:
    images = []
    for section in SECTIONS:
        entries = spec.get(section)
        for entry in entries if isinstance(entries, list) else ():
            container = _mapping(entry)
            image = container.get("image")
            images.append(ContainerImage(
                section, str(container.get("name") or ""), image if isinstance(image, str) else ""
            ))
    return tuple(images)


def _duplicate_names(images: tuple[ContainerImage, ...]) -> list[str]:
    """Container names used twice (the API requires them unique across all three sections)."""
    first: dict[str, str] = {}
    problems = []
    for image in images:
        if not image.container:
            continue
        if image.container in first:
            problems.append(f"{image.label}: the name is also used in {first[image.container]}")
        else:
            first[image.container] = image.section
    return problems


def _pull_secrets(spec: Mapping[str, Any]) -> tuple[str, ...]:
    entries = spec.get("imagePullSecrets")
    names = (_mapping(entry).get("name") for entry in (entries if isinstance(entries, list) else ()))
    return tuple(name for name in names if isinstance(name, str) and name)


def _controller_owner(references: Any) -> str | None:
    for entry in references if isinstance(references, list) else ():
        reference = _mapping(entry)
        if reference.get("controller") is True:
            return f"{reference.get('kind')}/{reference.get('name')}"
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _string_map(value: Any) -> dict[str, str]:
    return {str(key): str(item) for key, item in _mapping(value).items()}
