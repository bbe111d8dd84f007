"""Where the time goes: the engine's warm pass under cProfile, in this process, without Ansible.

The modules and the controller all run ``Migration`` (discover, back up,
rewrite); profiling one pass over the converged cluster shows what a warm
run costs once process start-up and Ansible's templating are taken away.
cProfile sees the main thread only: time the main thread spends waiting on
the HEAD thread pool is reported as ``ensure_all``.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Sequence
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils import factory
from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope
from bench.env import BenchLab

# Functions whose cumulative time splits a pass into its phases.
PHASES = {
    "discover": "migration.py:discover",
    "back_up": "migration.py:back_up",
    "rewrite": "migration.py:rewrite",
    "kube list (HTTP + JSON)": "kube.py:list",
    "parse workloads": "workloads.py:workload_from_object",
}


def engine_pass(bl: BenchLab, repository: str, kinds: Sequence[str], top: int = 12) -> dict[str, Any]:
    """One ``Migration.run()`` with the playbook's settings, profiled; phases and the top functions."""
    lab = bl.lab
    options = factory.BackupOptions.from_mapping({
        "backup_registry": repository, "backup_authfile": str(lab.backup_authfile), "certs_dir": str(lab.certs_dir)})
    engine = Migration.from_options({"kubeconfig": str(lab.kubeconfig)}, options, Scope.of(kinds))
    profiler = cProfile.Profile()
    started = time.monotonic()
    profiler.enable()
    report = engine.run()
    profiler.disable()
    wall = time.monotonic() - started
    stats = pstats.Stats(profiler)
    phases = {}
    for label, suffix in PHASES.items():
        path, function = suffix.split(":")
        # pstats' cumulative time counts outermost calls only, so recursion is not double-counted.
        phases[label] = round(sum(entry[3] for (filename, _, name), entry in stats.stats.items()  # type: ignore[attr-defined]
                                  if filename.endswith(path) and name == function), 3)
    listing = io.StringIO()
    pstats.Stats(profiler, stream=listing).sort_stats("cumulative").print_stats(top)
    return {
        "wall_s": round(wall, 3),
        "summary": report.summary(),
        "writes": engine.api.writes,
        "phases_s": phases,
        "top_cumulative": _top(stats, top),
        "pstats": listing.getvalue()[-6000:],
    }


def _top(stats: pstats.Stats, count: int) -> list[dict[str, Any]]:
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{filename.rsplit('/', 1)[-1]}:{line}({name})", "calls": calls,
                     "own_s": round(own, 3), "cumulative_s": round(cumulative, 3)})
    rows.sort(key=lambda row: row["cumulative_s"], reverse=True)
    return rows[:count]
