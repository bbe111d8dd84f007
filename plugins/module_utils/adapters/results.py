"""What the engine found and did, as the JSON-able return values of image-clone's modules.

Pure functions over engine objects (``BackupOutcome``, ``Workload``,
``WorkloadPlan``, ``WorkloadReport``...). They read those objects' attributes
only, and import nothing that needs the kubernetes client, so this file
imports wherever the modules' option specs do. Nothing here ever holds a
credential: engine objects carry none, and messages come from the engine,
which keeps secrets out of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.naming import backup_reference, naming_problem
from ansible_collections.imageclone.backup.plugins.module_utils.reference import InvalidReference
from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState, WorkloadState

if TYPE_CHECKING:  # the engine's types, for the reader: importing them needs the kubernetes client
    from ansible_collections.imageclone.backup.plugins.module_utils.migration import WorkloadReport
    from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
    from ansible_collections.imageclone.backup.plugins.module_utils.plan import (
        BackupOutcome,
        ContainerChange,
        WorkloadPlan,
    )
    from ansible_collections.imageclone.backup.plugins.module_utils.reference import ImageReference
    from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import RewriteResult
    from ansible_collections.imageclone.backup.plugins.module_utils.workloads import ContainerImage, Skipped, Workload

# Return keys of the images in each backup state. ``failed`` is Ansible's own result flag (a
# non-empty list there would mark the task failed), hence ``failed_images``; for the same reason
# the workload modules return ``skipped_workloads``, never ``skipped``.
STATE_LISTS: Final = {ImageState.COPIED: "copied", ImageState.PRESENT: "present", ImageState.MISSING: "missing",
                      ImageState.FAILED: "failed_images"}
# Image states of workload_images_info beyond the backup's: not looked up, or not an image reference.
UNCHECKED: Final = "unchecked"
INVALID: Final = "invalid"


def outcome(result: BackupOutcome) -> dict[str, Any]:
    """One image's backup: ``source`` (as written), ``backup``, ``digest``, ``state``, ``reason``,
    ``referrers_copied``."""
    return {
        "source": result.source,
        "backup": result.backup,
        "digest": result.digest,
        "state": result.state.value,  # a plain str: Ansible's result checks reject str subclasses
        "reason": result.reason,
        "referrers_copied": result.referrers_copied,
    }


def backup_results(outcomes: Mapping[str, BackupOutcome]) -> dict[str, Any]:
    """``images`` (one entry per key of ``outcomes``, in order) and the source lists by state (``STATE_LISTS``)."""
    results: dict[str, Any] = {"images": [outcome(result) for result in outcomes.values()]}
    for state, key in STATE_LISTS.items():
        results[key] = [source for source, result in outcomes.items() if result.state == state]
    return results


def backup_failure(outcomes: Mapping[str, BackupOutcome], fail_on_missing: bool, fail_on_error: bool = True
                   ) -> str | None:
    """Why a backup run failed (failed images with ``fail_on_error``, missing ones with ``fail_on_missing``),
    or None."""
    failing = {state for state, wanted in ((ImageState.FAILED, fail_on_error), (ImageState.MISSING, fail_on_missing))
               if wanted}
    bad = [result for result in outcomes.values() if result.state in failing]
    if not bad:
        return None
    lines = "; ".join(f"{result.source}: {result.state}: {result.reason or 'no reason given'}" for result in bad)
    return f"{len(bad)} of {len(outcomes)} image(s) are not backed up: {lines}"


def change(item: ContainerChange) -> dict[str, str]:
    """One container's image change: ``section``, ``container``, ``before``, ``after``."""
    return {"section": item.section, "container": item.container, "before": item.before, "after": item.after}


def skipped_entry(item: Skipped) -> dict[str, str]:
    """Something discovery left alone: ``kind``, ``namespace``, ``name``, ``reason``."""
    return {"kind": item.kind, "namespace": item.namespace, "name": item.name, "reason": item.reason}


def workload_images(
    workload: Workload, plan: WorkloadPlan, outcomes: Mapping[str, BackupOutcome] | None, policy: NamingPolicy
) -> dict[str, Any]:
    """What ``workload_images_info`` says about one workload.

    ``outcomes`` is ``None`` when backups were not checked: every image is
    then ``unchecked`` and ``backup`` is the name its backup gets, unpinned.
    """
    return {
        "key": workload.key,
        "kind": workload.kind.name,
        "namespace": workload.namespace,
        "name": workload.name,
        "managed_by": workload.managed_by,
        "problems": list(workload.problems),
        "images": [_image(image, outcomes, policy) for image in workload.images],
        "rewrite": [change(item) for item in plan.changes],
        "ready": plan.ready,
        "blockers": list(plan.blockers),
        "left_to_owner": workload.left_to_owner,
    }


def _image(
    image: ContainerImage, outcomes: Mapping[str, BackupOutcome] | None, policy: NamingPolicy
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "section": image.section,
        "container": image.container,
        "image": image.image,
        "backup": None,
        "digest": None,
        "state": INVALID,
        "reason": image.problem,
    }
    if image.reference is None:
        return entry
    found = outcomes.get(image.image) if outcomes is not None else None
    if found is None:
        entry.update(state=UNCHECKED, reason=None if outcomes is None else "no backup result")
        entry["digest"] = image.reference.digest
        problem = naming_problem(image.reference, policy)
        if outcomes is not None and problem is not None:
            entry.update(state=ImageState.FAILED.value, reason=f"cannot name its backup: {problem}")
    else:
        entry.update(backup=found.backup, digest=found.digest, state=found.state, reason=found.reason)
    if entry["backup"] is None:
        entry["backup"] = _backup_name(image.reference, policy)
    return entry


def _backup_name(reference: ImageReference, policy: NamingPolicy) -> str | None:
    """Where the backup of ``reference`` goes (its digest kept, none added); None when it cannot have one."""
    try:
        return str(backup_reference(reference, policy))
    except InvalidReference:
        return None


def workload_report(report: WorkloadReport) -> dict[str, Any]:
    """One workload's fate in ``workload_rewrite``; ``changes`` lists the image changes written (or, in check
    mode, that would be), ``pull_secret`` the pull Secret reference added, if any."""
    result: RewriteResult | None = report.result
    return workload_entry(report.key, report.state, report.reason, report.managed_by,
                          changes=[change(item) for item in result.changes] if result is not None else [],
                          pull_secret=result.pull_secret if result is not None else None)


def workload_entry(key: str, state: WorkloadState, reason: str | None = None, managed_by: str | None = None, *,
                   changes: Sequence[Mapping[str, str]] = (), pull_secret: str | None = None) -> dict[str, Any]:
    """One entry of ``workload_rewrite``'s ``workloads``, for workload ``key`` (``Kind/namespace/name``)."""
    kind, namespace, name = key.split("/", 2)
    return {
        "key": key,
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "state": state.value,
        "reason": reason,
        "managed_by": managed_by,
        "changes": list(changes),
        "pull_secret": pull_secret,
    }


def workload_diff(report: WorkloadReport) -> dict[str, Any] | None:
    """Ansible's diff of one written workload (images by section and container, and
    ``imagePullSecrets`` when one was added); None when nothing was written."""
    if report.result is None or not report.result.changed:
        return None
    sides = report.result.diff()
    return {"before": sides["before"], "after": sides["after"], "before_header": report.key, "after_header": report.key}


def workload_summary(reports: Iterable[Mapping[str, Any]], skipped_count: int = 0) -> dict[str, int]:
    """How many workloads ended in each state (all states, zeros included), and how many were skipped."""
    counts = Counter(report["state"] for report in reports)
    return {state.value: counts[state] for state in WorkloadState} | {"skipped": skipped_count}


def trouble(reports: Sequence[Mapping[str, Any]]) -> str | None:
    """What went wrong (every blocked or failed workload, with its reason), or None."""
    bad = [report for report in reports if WorkloadState(report["state"]).trouble]
    if not bad:
        return None
    lines = "; ".join(f"{report['key']}: {report['state']}: {report['reason']}" for report in bad)
    return f"{len(bad)} of {len(reports)} workload(s) blocked or failed: {lines}"
