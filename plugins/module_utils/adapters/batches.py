"""The migration playbook's rewrite batches, from the discovery and backup tasks' registered results.

A workload already converged (every image it runs is a backup the backup task has just looked up and
found whole) would cost a rewrite task a module process, a LIST and a HEAD per image only to report it
unchanged: it is reported unchanged here instead, and only the other workloads are batched. A backup
found lost, or never looked up, keeps its workloads in the batches, where the rewrite restores or
blocks them as before.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.results import workload_entry
from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState, WorkloadState


def rewrite_batches(discovered: Mapping[str, Any], in_use: Sequence[Mapping[str, Any]],
                    batch_size: int) -> dict[str, list[Any]]:
    """``batches`` (lists of ``kind``/``namespace``/``name``, in discovery order) and ``converged`` (one
    ``workload_rewrite``-shaped report, state ``unchanged``, per workload left out of the batches).

    ``in_use`` holds the ``backups_in_use`` entries of the backup task.
    """
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, not {batch_size}")
    whole = {entry["source"] for entry in in_use if ImageState(entry["state"]).verified}
    pending: list[dict[str, str]] = []
    converged: list[dict[str, Any]] = []
    for workload in discovered.get("workloads", []):
        if _is_converged(workload, whole):
            converged.append(workload_entry(workload["key"], WorkloadState.UNCHANGED,
                                            managed_by=workload.get("managed_by")))
        else:
            pending.append({key: workload[key] for key in ("kind", "namespace", "name")})
    return {"batches": [pending[start:start + batch_size] for start in range(0, len(pending), batch_size)],
            "converged": converged}


def _is_converged(workload: Mapping[str, Any], whole: Collection[str]) -> bool:
    images = workload.get("images") or []
    return (not workload.get("rewrite") and not workload.get("problems") and bool(images)
            and all(image["image"] in whole for image in images))
