"""Write a ready plan into its workload, or undo it, as one strategic merge patch.

The patch names containers by ``name`` (the merge key of pod spec container
lists), so only their ``image`` changes and every other field of the object
is left as it is. Its shape, with the pod spec at the kind's
``pod_spec_path`` (``spec.template.spec`` here)::

    {"metadata": {"resourceVersion": "41",
                  "annotations": {"imageclone.io/original-images":
                                  "{\\"containers\\":{\\"app\\":\\"nginx:1.27\\"}}"}},
     "spec": {"template": {"spec": {
         "initContainers": [{"name": "init", "image": "<backup>:<tag>@sha256:..."}],
         "containers": [{"name": "app", "image": "<backup>:<tag>@sha256:..."}],
         "imagePullSecrets": [{"name": "imageclone-backup-pull"}],
         "$setElementOrder/imagePullSecrets": [{"name": "team-cred"},
                                               {"name": "imageclone-backup-pull"}]}}}}

``resourceVersion`` makes the write conditional: a concurrent change turns it
into a 409, after which the object is read again and the plan recomputed.
The annotation is only written with image changes, the pull secret entries
only when one is requested and missing. Ephemeral containers are never
written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError
from ansible_collections.imageclone.backup.plugins.module_utils.naming import is_backup_of
from ansible_collections.imageclone.backup.plugins.module_utils.plan import ContainerChange, WorkloadPlan
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import pull_secret_fragment
from ansible_collections.imageclone.backup.plugins.module_utils.reference import InvalidReference, parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    REWRITABLE_SECTIONS,
    Workload,
    workload_from_object,
)

ORIGINAL_IMAGES: Final = "imageclone.io/original-images"
DEFAULT_ATTEMPTS: Final = 5

Replan = Callable[[Workload], WorkloadPlan]
Originals = dict[str, dict[str, str]]


class RewriteError(Exception):
    """A workload cannot be rewritten or reverted; the message names it and says why."""


@dataclass(frozen=True)
class RewriteResult:
    """What a rewrite or revert did (or, in a dry run, would do) to one workload.

    ``workload`` is the state the write was computed against, ``changes`` the
    image changes, ``pull_secret`` the pull secret reference added, if any,
    and ``object`` the object as the server returned it after the patch.
    """

    workload: Workload
    changed: bool
    changes: tuple[ContainerChange, ...] = ()
    pull_secret: str | None = None
    object: Mapping[str, Any] | None = None

    def diff(self) -> dict[str, dict[str, Any]]:
        """``{"before": ..., "after": ...}`` of the changed images by section and container
        (and of ``imagePullSecrets`` when one was added), for Ansible's diff output."""
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for change in self.changes:
            before.setdefault(change.section, {})[change.container] = change.before
            after.setdefault(change.section, {})[change.container] = change.after
        if self.pull_secret is not None:
            before["imagePullSecrets"] = list(self.workload.pull_secrets)
            after["imagePullSecrets"] = [*self.workload.pull_secrets, self.pull_secret]
        return {"before": before, "after": after}


@dataclass(frozen=True)
class _Edit:
    changes: tuple[ContainerChange, ...]
    pod_spec: dict[str, Any]
    annotations: dict[str, str | None]
    pull_secret: str | None = None


def apply(
    api: KubeApi,
    plan: WorkloadPlan,
    replan: Replan,
    *,
    pull_secret: str | None = None,
    dry_run: bool = False,
    attempts: int = DEFAULT_ATTEMPTS,
) -> RewriteResult:
    """Point ``plan.workload`` at its backups and record the images it replaces.

    ``replan`` recomputes the plan for a freshly read workload after a 409
    conflict; up to ``attempts`` patches are tried. ``pull_secret`` names a
    Secret to add to ``imagePullSecrets`` in the same patch. A converged plan
    that already references the pull secret sends no request at all.
    ``dry_run`` sends the patch with ``dryRun=All``: validated and authorized
    by the server, never stored. Raises ``RewriteError`` when the plan is (or,
    after a conflict, becomes) not ready, ``PullSecretError`` and
    ``KubeApiError``.
    """

    def compose(current: Workload) -> _Edit | None:
        fresh = plan if current is plan.workload else replan(current)
        if not fresh.ready:
            raise RewriteError(f"{current.key} is not ready to rewrite: {'; '.join(fresh.blockers)}")
        pod_spec = _images_fragment(fresh.changes)
        if pull_secret is not None:
            pod_spec.update(pull_secret_fragment(current, pull_secret))
        if not pod_spec:
            return None
        annotations: dict[str, str | None] = {}
        if fresh.changes:
            annotations[ORIGINAL_IMAGES] = _encode(_merged_originals(current, fresh.changes))
        added = pull_secret if "imagePullSecrets" in pod_spec else None
        return _Edit(fresh.changes, pod_spec, annotations, added)

    return _patch(api, plan.workload, compose, dry_run, attempts)


def revert(
    api: KubeApi, workload: Workload, *, dry_run: bool = False, attempts: int = DEFAULT_ATTEMPTS
) -> RewriteResult:
    """Restore the images recorded in ``imageclone.io/original-images`` and remove the annotation.

    Containers that no longer exist are ignored; without the annotation
    nothing is sent. Conflicts are retried against the re-read object like
    ``apply``. Raises ``RewriteError`` for an unreadable annotation and
    ``KubeApiError``.
    """

    def compose(current: Workload) -> _Edit | None:
        if ORIGINAL_IMAGES not in current.annotations:
            return None
        changes = reverting_changes(current)
        return _Edit(changes, _images_fragment(changes), {ORIGINAL_IMAGES: None})

    return _patch(api, workload, compose, dry_run, attempts)


def reverting_changes(workload: Workload) -> tuple[ContainerChange, ...]:
    """The image changes a revert of ``workload`` writes: each existing container whose recorded original
    differs from what it runs. Raises ``RewriteError`` for an unreadable annotation."""
    recorded = original_images(workload)
    return tuple(
        ContainerChange(image.section, image.container, image.image, original)
        for image in workload.images
        if (original := recorded.get(image.section, {}).get(image.container, image.image)) != image.image
    )


def original_images(workload: Workload) -> Originals:
    """The images recorded before rewriting, by section and container; ``{}`` when none are.

    Raises ``RewriteError`` naming the workload when the annotation is not
    the JSON object this module writes.
    """
    text = workload.annotations.get(ORIGINAL_IMAGES)
    if text is None:
        return {}
    try:
        recorded = json.loads(text)
    except ValueError:
        recorded = None
    if not _is_originals(recorded):
        raise RewriteError(
            f"{workload.key}: annotation {ORIGINAL_IMAGES} is not a JSON object of "
            f"{' / '.join(REWRITABLE_SECTIONS)} -> container name -> image"
        )
    return recorded


def _patch(
    api: KubeApi,
    workload: Workload,
    compose: Callable[[Workload], _Edit | None],
    dry_run: bool,
    attempts: int,
) -> RewriteResult:
    """Send ``compose``'s edit of ``workload``, recomposing against a fresh read after a conflict."""
    current = workload
    attempt = 1
    while True:
        edit = compose(current)
        if edit is None:
            return RewriteResult(current, changed=False)
        kind = current.kind
        try:
            stored = api.patch(kind, current.namespace, current.name, _body(current, edit), dry_run=dry_run)
            return RewriteResult(current, True, edit.changes, edit.pull_secret, stored)
        except KubeApiError as error:
            if not error.conflict or attempt >= attempts:
                raise
        attempt += 1
        current = workload_from_object(kind, api.get(kind, current.namespace, current.name))


def _body(workload: Workload, edit: _Edit) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": workload.resource_version}
    if edit.annotations:
        metadata["annotations"] = edit.annotations
    body: dict[str, Any] = {"metadata": metadata}
    if edit.pod_spec:
        body |= workload.kind.at_pod_spec(edit.pod_spec)
    return body


def _images_fragment(changes: tuple[ContainerChange, ...]) -> dict[str, Any]:
    fragment: dict[str, list[dict[str, str]]] = {}
    for change in changes:
        fragment.setdefault(change.section, []).append({"name": change.container, "image": change.after})
    return fragment


def _merged_originals(workload: Workload, changes: tuple[ContainerChange, ...]) -> Originals:
    """The recorded originals after ``changes``.

    A container already pointing at its backup is not in ``changes`` and keeps
    its first original. A changed container keeps it too when it runs a backup
    of that original (the workload moves to another backup target: reverting
    must still reach upstream); otherwise it records what it runs now, which
    after a user's own image update is the newer image, the one to revert to.
    Entries of containers that no longer exist are dropped.
    """
    present = {(image.section, image.container) for image in workload.images}
    merged = {
        section: {name: image for name, image in images.items() if (section, name) in present}
        for section, images in original_images(workload).items()
    }
    for change in changes:
        recorded = merged.get(change.section, {}).get(change.container)
        if recorded is None or not _runs_backup_of(change.before, recorded):
            merged.setdefault(change.section, {})[change.container] = change.before
    return {section: images for section, images in merged.items() if images}


def _runs_backup_of(image: str, original: str) -> bool:
    try:
        return is_backup_of(parse_reference(image), parse_reference(original))
    except InvalidReference:
        return False


def _encode(originals: Originals) -> str:
    return json.dumps(originals, sort_keys=True, separators=(",", ":"))


def _is_originals(value: Any) -> TypeGuard[Originals]:
    return isinstance(value, dict) and all(
        section in REWRITABLE_SECTIONS
        and isinstance(images, dict)
        and all(isinstance(name, str) and isinstance(image, str) for name, image in images.items())
        for section, images in value.items()
    )
