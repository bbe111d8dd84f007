"""What to write into a workload, given what the backup run achieved: all of it or nothing.

A workload is rewritten only when every one of its images is verified in the
backup registry; a half-migrated workload would still depend on the source
registry while looking protected. Rewritten images are pinned by digest by
default, so what runs is exactly what was verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ansible_collections.imageclone.backup.plugins.module_utils.naming import (
    NamingPolicy,
    backup_reference,
    is_backup_reference,
    naming_problem,
    pinned_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    InvalidReference,
    parse_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    REWRITABLE_SECTIONS,
    ContainerImage,
    Workload,
)


@dataclass(frozen=True)
class BackupOutcome:
    """What the backup run established for one source image string.

    ``backup`` is the backup reference (normally pinned, ``repo:tag@digest``),
    ``digest`` the digest found in the backup registry; ``state`` is
    ``copied``, ``present`` or ``restored`` (a lost backup copied again from
    its recorded original) when the backup is verified, ``missing`` or
    ``failed`` (with ``reason``) when it is not. A failure that may pass
    is ``transient`` (a registry unavailable or throttling, a copy cut
    short by a server error); ``retry_after`` is how long a throttling
    registry wants to be left alone (seconds), else None. ``referrers_copied``:
    how many signatures, attestations, SBOMs... referring to the image were
    copied into the backup by this run.
    """

    source: str
    backup: str | None
    digest: str | None
    state: ImageState
    reason: str | None = None
    transient: bool = False
    retry_after: float | None = None
    referrers_copied: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ImageState(self.state))  # "failed" and ImageState.FAILED alike

    @property
    def verified(self) -> bool:
        return self.state.verified


@dataclass(frozen=True)
class ContainerChange:
    """One container's image, before and after the rewrite."""

    section: str
    container: str
    before: str
    after: str


@dataclass(frozen=True)
class WorkloadPlan:
    """The image changes for one workload and what, if anything, blocks them.

    ``ready``: every image is verified and the changes may be written.
    ``converged``: nothing to change and nothing wrong; such a workload needs
    no write. ``changes`` lists what a ready plan writes (for a blocked plan,
    what it would write once unblocked).
    """

    workload: Workload
    changes: tuple[ContainerChange, ...]
    blockers: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.blockers

    @property
    def converged(self) -> bool:
        return not self.blockers and not self.changes


class _Blocked(Exception):
    """One image cannot be pointed at its backup; the message says why."""


def images_to_back_up(workloads: Iterable[Workload], policy: NamingPolicy) -> dict[str, ImageReference]:
    """Each distinct image string of ``workloads`` that needs a backup, with its parsed reference.

    Leaves out images already in the backup space of ``policy``, images
    that do not parse (those are on ``Workload.problems``) and images whose
    backup cannot be named (``plan_workload`` blocks their workloads, naming
    the image). Ephemeral containers count: they are backed up even though
    they are never rewritten.
    """
    wanted: dict[str, ImageReference] = {}
    for workload in workloads:
        for image in workload.images:
            reference = image.reference
            if reference is None or image.image in wanted or is_backup_reference(reference, policy):
                continue
            if naming_problem(reference, policy) is None:
                wanted[image.image] = reference
    return wanted


def plan_workload(
    workload: Workload,
    policy: NamingPolicy,
    outcomes: Mapping[str, BackupOutcome],
    *,
    pin: bool = True,
) -> WorkloadPlan:
    """The plan for ``workload`` given ``outcomes`` keyed by image string as written.

    Images already in the backup space stay as they are, but need a verified
    outcome too: a workload running from a lost backup is not converged.
    Every other image needs a backup name and a verified outcome, else the
    plan is blocked with a reason naming the container and the image. Targets are ``<backup>:<tag>@<digest>``, or
    ``<backup>:<tag>`` with ``pin=False``; a source referenced by digest keeps
    its digest either way. Never raises for bad input: it becomes a blocker.
    """
    blockers = list(workload.problems)
    changes = []
    for image in workload.images:
        if image.reference is None:
            continue
        if is_backup_reference(image.reference, policy):
            try:
                _require_verified(image, outcomes.get(image.image))
            except _Blocked as blocked:
                blockers.append(str(blocked))
            continue
        try:
            after = _rewrite_target(image, image.reference, policy, outcomes.get(image.image), pin)
        except _Blocked as blocked:
            blockers.append(str(blocked))
            continue
        if image.section in REWRITABLE_SECTIONS and after != image.image:
            changes.append(ContainerChange(image.section, image.container, image.image, after))
    # An owner's rewrite reaches the template through the owner's own spec, which recreates the object.
    if changes and workload.kind.template_immutable and not workload.left_to_owner:
        blockers.append(
            f"{workload.kind.name} pod templates are immutable: the images are backed up, "
            f"but {workload.key} must be recreated to use them"
        )
    return WorkloadPlan(workload, tuple(changes), tuple(blockers))


def _rewrite_target(
    image: ContainerImage,
    source: ImageReference,
    policy: NamingPolicy,
    outcome: BackupOutcome | None,
    pin: bool,
) -> str:
    """The reference to write for ``image``; raises ``_Blocked`` when there is none."""
    problem = naming_problem(source, policy)
    if problem is not None:
        raise _Blocked(f"{image.label}: image {image.image!r} cannot be backed up: {problem}")
    outcome = _require_verified(image, outcome)
    where = f"{image.label}: image {image.image!r}"
    try:
        backup = backup_reference(source, policy)
        digest = _backup_digest(outcome, backup)
        # A digest-referenced source stays pinned: dropping the digest would change what runs.
        return pinned_reference(backup, digest, pin=pin or source.digest is not None)
    except (InvalidReference, ValueError) as error:
        raise _Blocked(f"{where} cannot be rewritten: {error}") from None


def _require_verified(image: ContainerImage, outcome: BackupOutcome | None) -> BackupOutcome:
    """``outcome`` if it is verified; else raise ``_Blocked`` naming the container and image."""
    where = f"{image.label}: image {image.image!r}"
    if outcome is None:
        raise _Blocked(f"{where} has no backup result")
    if not outcome.verified:
        detail = f": {outcome.reason}" if outcome.reason else ""
        raise _Blocked(f"{where} is not backed up ({outcome.state}{detail})")
    return outcome


def _backup_digest(outcome: BackupOutcome, expected: ImageReference) -> str | None:
    """The verified digest: ``outcome.digest``, else the one in ``outcome.backup``.

    Raises ``ValueError`` when ``outcome.backup`` is not where the naming
    policy puts the backup, or pins another digest than ``outcome.digest``:
    the backup run and this plan would disagree about what was verified.
    """
    if outcome.backup is None:
        return outcome.digest
    claimed = parse_reference(outcome.backup, default_tag=None)
    if claimed.without_digest() != expected.without_digest():
        raise ValueError(
            f"the backup result names {outcome.backup!r}, but the naming policy puts it at "
            f"{expected.without_digest()}"
        )
    if outcome.digest and claimed.digest and outcome.digest != claimed.digest:
        raise ValueError(f"the backup result pins {claimed.digest}, but reports digest {outcome.digest}")
    return outcome.digest or claimed.digest
