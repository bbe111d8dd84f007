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
                      discovered: Mapping[str, Any], check_mode: bool = False,
                      converged: Sequence[Mapping[str, Any]] = (),
                      in_use: Sequence[Mapping[str, Any]] = ()) -> dict[str, list[str]]:
    """``lines`` to print and ``unprotected`` (``key: reason`` of each blocked or failed workload).

    ``attempted`` holds the rewrite loop's per-batch results, ``backed_up`` the image entries of the
    backup tasks, ``discovered`` the discovery task's result; ``converged`` the reports of the workloads
    left out of the batches (``rewrite_batches``), ``in_use`` the backup task's entries for the backups
    already in use, counted unless a rewrite task reported them afresh.
    """
    workloads = [*converged, *(report for batch in attempted for report in batch.get("workloads", []))]
    # The backup task looks up the backups in use of a whole fleet: this cluster's are those its workloads run.
    running = {image["image"] for workload in discovered.get("workloads", []) for image in workload.get("images", [])}
    images = _distinct_images([*backed_up, *(image for batch in attempted for image in batch.get("images", [])),
                               *(entry for entry in in_use if entry["source"] in running)])
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
    reached = {_key(workload) for batch in attempted for workload in batch.get("item", [])}
    done = reached | {report["key"] for report in converged}
    lines += [f"not attempted (an earlier batch failed): {_key(workload)}"
              for workload in discovered.get("workloads", []) if _key(workload) not in done]
    unprotected = [f"{report['key']}: {report['reason']}" for report in workloads
                   if WorkloadState(report["state"]).trouble]
    return {"lines": lines, "unprotected": unprotected}


def _key(workload: Mapping[str, Any]) -> str:
    return f"{workload['kind']}/{workload['namespace']}/{workload['name']}"


def _distinct_images(reported: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each source once, as first reported."""
    seen: set[str] = set()
    images = []
    for image in reported:
        if image["source"] not in seen:
            seen.add(image["source"])
            images.append(image)
    return images
