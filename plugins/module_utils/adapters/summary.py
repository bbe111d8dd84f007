"""The migration playbook's closing summary, from its tasks' registered results.

Written in Python rather than as a Jinja template: at a thousand workloads,
grouping the batches' results in Jinja took seconds per reference, while this
reads each result once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.states import (
    PASS_WORKLOAD_STATES,
    ImageState,
    WorkloadState,
)

# In check mode nothing was copied, restored or rewritten: the summary says what would be.
CHECK_MODE_LABELS: Final = {"rewritten": "would rewrite", "copied": "would copy", "restored": "would restore"}
# Workloads the run could not finish itself, listed one per line: owned ones name the owner to configure.
LISTED_WORKLOAD_STATES: Final = (WorkloadState.OWNED,) + tuple(state for state in WorkloadState if state.trouble)
LISTED_IMAGE_STATES: Final = (ImageState.MISSING, ImageState.FAILED)


def migration_summary(attempted: Sequence[Mapping[str, Any]], backed_up: Sequence[Mapping[str, Any]],
                      discovered: Mapping[str, Any], check_mode: bool = False) -> dict[str, list[str]]:
    """``lines`` to print and ``unprotected`` (``key: reason`` of each blocked or failed workload).

    ``attempted`` holds the rewrite loop's per-batch results, ``backed_up`` the image entries of the
    backup tasks, ``discovered`` the discovery task's result.
    """
    workloads = [report for batch in attempted for report in batch.get("workloads", [])]
    images = _distinct_images(backed_up, attempted)
    labels = CHECK_MODE_LABELS if check_mode else {}
    by_state = Counter(report["state"] for report in workloads)
    images_by_state = Counter(image["state"] for image in images)
    workload_counts = ", ".join(f"{labels.get(state, state)} {by_state[state]}" for state in PASS_WORKLOAD_STATES)
    image_counts = ", ".join(f"{labels.get(state, state)} {images_by_state[state]}" for state in ImageState)
    lines = [f"workloads: {len(workloads)} ({workload_counts}), skipped {len(discovered.get('skipped_workloads', []))}",
             f"images: {len(images)} ({image_counts})"]
    lines += [f"{state}: {report['key']}: {report['reason']}"
              for state in LISTED_WORKLOAD_STATES for report in workloads if report["state"] == state]
    lines += [f"image {state}: {image['source']}: {image['reason']}"
              for state in LISTED_IMAGE_STATES for image in images if image["state"] == state]
    lines += [f"batch stopped: {', '.join(workload['name'] for workload in batch['item'])}: {batch.get('msg')}"
              for batch in attempted if batch.get("failed")]
    reached = sum(len(batch.get("item", [])) for batch in attempted)
    lines += [f"not attempted (an earlier batch failed): {workload['kind']}/{workload['namespace']}/{workload['name']}"
              for workload in discovered.get("workloads", [])[reached:]]
    unprotected = [f"{report['key']}: {report['reason']}" for report in workloads
                   if WorkloadState(report["state"]).trouble]
    return {"lines": lines, "unprotected": unprotected}


def _distinct_images(backed_up: Sequence[Mapping[str, Any]],
                     attempted: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The backup tasks' images, then those only the rewrite verified (already in the backup, or
    restored when lost), each source once."""
    seen = {image["source"] for image in backed_up}
    images = list(backed_up)
    for batch in attempted:
        for image in batch.get("images", []):
            if image["source"] not in seen:
                seen.add(image["source"])
                images.append(image)
    return images
