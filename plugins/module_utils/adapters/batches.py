"""The migration playbook's rewrite batches, from the discovery and backup tasks' registered results.

A workload already converged (every image it runs is a backup the backup task has just looked up and
found whole) would cost a rewrite task a module process, a LIST and a HEAD per image only to report it
unchanged: it is reported unchanged here instead, and only the other workloads are batched. A backup
found lost, or never looked up, keeps its workloads in the batches, where the rewrite restores or
blocks them as before.

Each batch is handed only the images it uses among those whose referrers the backup task checked,
so its task arguments (echoed in its result) stay the size of the batch, not of the whole run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.results import workload_entry
from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState, WorkloadState


def rewrite_batches(discovered: Mapping[str, Any], in_use: Sequence[Mapping[str, Any]],
                    batch_size: int, referrers_checked: Iterable[str] = ()) -> dict[str, list[Any]]:
    """``batches`` (lists of ``kind``/``namespace``/``name``, in discovery order), ``referrers_checked``
    (for each batch, the images of ``referrers_checked`` its workloads use, sorted) and ``converged`` (one
    ``workload_rewrite``-shaped report, state ``unchanged``, per workload left out of the batches).

    ``in_use`` holds the ``backups_in_use`` entries of the backup task.
    """
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, not {batch_size}")
    whole = {entry["source"] for entry in in_use if ImageState(entry["state"]).verified}
    checked = frozenset(referrers_checked)
    pending: list[Mapping[str, Any]] = []
    converged: list[dict[str, Any]] = []
    for workload in discovered.get("workloads", []):
        if _is_converged(workload, whole):
            converged.append(workload_entry(workload["key"], WorkloadState.UNCHANGED,
                                            managed_by=workload.get("managed_by")))
        else:
            pending.append(workload)
    batches = [pending[start:start + batch_size] for start in range(0, len(pending), batch_size)]
    return {"batches": [[{key: workload[key] for key in ("kind", "namespace", "name")} for workload in batch]
                        for batch in batches],
            "referrers_checked": [sorted({image["image"] for workload in batch
                                          for image in workload.get("images") or []} & checked)
                                  for batch in batches],
            "converged": converged}


def _is_converged(workload: Mapping[str, Any], whole: Collection[str]) -> bool:
    images = workload.get("images") or []
    return (not workload.get("rewrite") and not workload.get("problems") and bool(images)
            and all(image["image"] in whole for image in images))
