"""What workload objects say about their images, and which workloads are ours to touch.

Discovery never raises on bad input: a container with an empty, missing or
malformed image is recorded on its workload (``Workload.problems``) so one odd
object cannot stop a cluster-wide run. API errors (403 on a LIST...) do raise.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.kinds import KINDS, Kind
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
# Annotations under this prefix are image-clone's own (opt-out, recorded originals...).
ANNOTATION_PREFIX: Final = "imageclone.io/"
SKIP_ANNOTATION: Final = f"{ANNOTATION_PREFIX}skip"
# Who else manages a workload, from the markers each tool writes itself (docs/gitops.md lists them).
ARGOCD: Final = "argocd"
FLUX: Final = "flux"
HELM: Final = "helm"
# GitOps controllers put their source back: a rewrite they do not know about is reverted.
GITOPS_MANAGERS: Final = frozenset({ARGOCD, FLUX})
# Argo CD's annotation tracking, and the instance label Argo CD's docs recommend for label
# tracking. Its default label, app.kubernetes.io/instance, is also every Helm chart's and
# Kubernetes' recommended label, so on its own it says nothing about Argo CD.
ARGOCD_ANNOTATIONS: Final = ("argocd.argoproj.io/tracking-id",)
ARGOCD_LABELS: Final = ("argocd.argoproj.io/instance",)
FLUX_LABELS: Final = ("kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name")
# Written by helm install/upgrade (not by helm template, which Argo CD renders charts with).
HELM_ANNOTATIONS: Final = ("meta.helm.sh/release-name",)
HELM_LABELS: Final = {"app.kubernetes.io/managed-by": "Helm"}
READ_ANNOTATIONS: Final = (*ARGOCD_ANNOTATIONS, *HELM_ANNOTATIONS)
NAMESPACE: Final = Resource("Namespace", "v1", "namespaces", namespaced=False)


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
    is ``"argocd"``, ``"flux"``, ``"helm"`` or None; ``problems`` lists everything that
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

    @property
    def handled_by_owner(self) -> bool:
        """Its controller owner is a workload the engine rewrites (a Deployment's ReplicaSet, a
        ReplicaSet's Pod): rewriting the owner is what changes this object, so it is left out."""
        return self.owner is not None and self.kind.skipped_when_owned and _owner_kind(self.owner) in KINDS

    @property
    def left_to_owner(self) -> str | None:
        """The controller owner whose own spec makes this workload, when the engine cannot rewrite that
        owner (a Prometheus object's StatefulSet, an Argo Rollout's ReplicaSet, a Node's mirror Pod):
        the images are backed up, and pointing the owner at them is the owner's configuration."""
        return self.owner if self.owner and not self.handled_by_owner else None


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


def workload_from_object(kind: Kind, obj: Mapping[str, Any]) -> Workload:
    """Read ``obj`` as a workload of ``kind``; never raises on malformed content."""
    metadata = _mapping(obj.get("metadata"))
    namespace, name = _identity(kind, obj)[1:]
    spec = kind.pod_spec(obj)
    images = _images(spec) if spec is not None else ()
    problems = [image.problem for image in images if image.problem] + _duplicate_names(images)
    if spec is None:
        problems.insert(0, f"no pod spec at {'.'.join(kind.pod_spec_path)}")
    return Workload(
        kind=kind,
        namespace=namespace,
        name=name,
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
        labels=_string_map(metadata.get("labels")),
        annotations=_string_map(metadata.get("annotations")),
        images=images,
        pull_secrets=_pull_secrets(spec or {}),
        owner=_controller_owner(metadata.get("ownerReferences")),
        managed_by=_manager(metadata),
        problems=tuple(problems),
        raw=obj,
    )


def projection(kind: Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``obj`` that ``workload_from_object`` reads and a rewrite patch needs, and nothing else.

    Reading the projection gives the same ``Workload`` as reading ``obj``; a
    cache keeps this (a few hundred bytes) instead of the full object (tens of
    kilobytes with managedFields and status). resourceVersion is left out:
    a status-only update leaves the projection unchanged.
    """
    metadata = _mapping(obj.get("metadata"))
    slim_metadata = {key: metadata.get(key) for key in ("name", "namespace", "uid")}
    labels = metadata.get("labels")
    annotations = {key: value for key, value in _mapping(metadata.get("annotations")).items()
                   if key.startswith(ANNOTATION_PREFIX) or key in READ_ANNOTATIONS}
    owner = _controller_owner_reference(metadata.get("ownerReferences"))
    for key, value in (("labels", labels), ("annotations", annotations), ("ownerReferences", owner and [owner])):
        if value:
            slim_metadata[key] = value
    slim: dict[str, Any] = {"metadata": slim_metadata}
    spec = kind.pod_spec(obj)
    if spec is not None:
        slim_spec = {section: [_name_and_image(entry) for entry in entries]
                     for section in SECTIONS if isinstance(entries := spec.get(section), list)}
        # What the pods pull with: their own pull Secrets and their ServiceAccount's.
        for key in ("imagePullSecrets", "serviceAccountName", "serviceAccount"):
            if key in spec:
                slim_spec[key] = spec[key]
        slim |= kind.at_pod_spec(slim_spec)
    return slim


def _name_and_image(entry: Any) -> Any:
    return {key: entry[key] for key in ("name", "image") if key in entry} if isinstance(entry, Mapping) else entry


def _manager(metadata: Mapping[str, Any]) -> str | None:
    """Flux, then Argo CD, then Helm: Flux's helm-controller and Argo CD's rendered charts carry Helm's
    markers too, and they, not Helm, put their source back."""
    labels = _string_map(metadata.get("labels"))
    annotations = _string_map(metadata.get("annotations"))
    if any(key in labels for key in FLUX_LABELS):
        return FLUX
    if any(key in annotations for key in ARGOCD_ANNOTATIONS) or any(key in labels for key in ARGOCD_LABELS):
        return ARGOCD
    if any(key in annotations for key in HELM_ANNOTATIONS) or any(
            labels.get(key) == value for key, value in HELM_LABELS.items()):
        return HELM
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
    if workload.handled_by_owner:
        return f"controlled by {workload.owner}, which is handled instead"
    if skip_gitops and workload.managed_by in GITOPS_MANAGERS:
        return f"managed by {workload.managed_by} (skip_gitops)"
    return None


def discover(
    api: KubeApi,
    kinds: Iterable[Kind] = KINDS.values(),
    namespaces: Iterable[str] | None = None,
    ignore_namespaces: Iterable[str] = (),
    skip_gitops: bool = False,
    only: Collection[tuple[str, str, str]] | None = None,
) -> DiscoveryResult:
    """Every workload of ``kinds`` in ``namespaces`` (all when None) that is ours to process.

    Lists each kind once cluster-wide when ``namespaces`` is None, else once
    per kind and namespace; kube-system and ``ignore_namespaces`` are never
    listed when named explicitly, they are reported as skipped namespaces.
    With ``only`` (kind name, namespace, name), the other listed objects are
    dropped unread: a batch of 25 out of a cluster-wide LIST reads 25.
    """
    ignored = frozenset(ignore_namespaces)
    scopes, skipped = _scopes(namespaces, ignored)
    workloads: list[Workload] = []
    for kind in kinds:
        for scope in scopes:
            items = api.list(kind, scope)[0]
            for item in items:
                if only is not None and _identity(kind, item) not in only:
                    continue
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


def _identity(kind: Kind, obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind name, namespace, name) of ``obj``, read as ``workload_from_object`` reads them."""
    metadata = _mapping(obj.get("metadata"))
    return kind.name, str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


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


def _owner_kind(owner: str) -> str:
    return owner.split("/", 1)[0]


def _controller_owner(references: Any) -> str | None:
    reference = _controller_owner_reference(references)
    return f"{reference['kind']}/{reference['name']}" if reference else None


def _controller_owner_reference(references: Any) -> dict[str, Any] | None:
    """The ownerReference of the object's controller, reduced to what names it."""
    for entry in references if isinstance(references, list) else ():
        reference = _mapping(entry)
        if reference.get("controller") is True:
            return {"kind": reference.get("kind"), "name": reference.get("name"), "controller": True}
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _string_map(value: Any) -> dict[str, str]:
    return {str(key): str(item) for key, item in _mapping(value).items()}
