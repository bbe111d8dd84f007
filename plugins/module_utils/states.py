"""The states a pass reports, each defined once: one per image's backup, one per workload.

``StrEnum``: every member is its own string, so module results, JSON logs,
metrics labels and the playbook's summary template see plain strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ImageState(StrEnum):
    """What a backup run established for one image."""

    COPIED = "copied"
    PRESENT = "present"
    RESTORED = "restored"  # a lost backup copied again from the workload's recorded original
    MISSING = "missing"
    FAILED = "failed"

    @property
    def verified(self) -> bool:
        """The backup holds the image at the expected digest."""
        return self in (ImageState.COPIED, ImageState.PRESENT, ImageState.RESTORED)

    @property
    def wrote(self) -> bool:
        """Something was written to the backup registry."""
        return self in (ImageState.COPIED, ImageState.RESTORED)


class WorkloadState(StrEnum):
    """What a pass did to one workload."""

    REWRITTEN = "rewritten"
    UNCHANGED = "unchanged"
    # Backed up, but another controller owns the pod template: the rewrite is its owner's to make.
    OWNED = "owned"
    BLOCKED = "blocked"
    FAILED = "failed"
    REVERTED = "reverted"

    @property
    def trouble(self) -> bool:
        """The workload is not where the pass wanted it."""
        return self in (WorkloadState.BLOCKED, WorkloadState.FAILED)

    @property
    def written(self) -> bool:
        return self in (WorkloadState.REWRITTEN, WorkloadState.REVERTED)


# A migration pass rewrites; only a revert reverts.
PASS_WORKLOAD_STATES: Final = tuple(state for state in WorkloadState if state is not WorkloadState.REVERTED)
