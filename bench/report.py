"""Turn ``bench/results.json`` into the results table and the target verdicts.

``python -m bench.doc`` prints the table, or (re)writes ``docs/benchmarks.md`` with
``--doc``. Every figure comes from the JSON: nothing here is a measured number.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024

# The targets the product set itself (not measurements).
TARGETS = {
    # The loopback profile's speed targets (the WAN profile's are in bench/wan.py).
    "warm_vs_sync": 2.0,           # warm playbook re-run at least this many times faster than a skopeo sync re-run
    "warm_vs_floor": 3.0,          # warm registry requests within this factor of the floor
    "cold_vs_sync": 1.5,           # cold playbook at least this many times faster than skopeo sync
    "cold_bytes_ratio": 1.0,       # bytes written = unique blob bytes
    "controller_p99_s": 1.0,       # burst of 1,000 Deployments, create->rewritten, with default flags
    "controller_burst_s": 60.0,
    "controller_burst_size": 1000,
    "idle_rss_mb": 150.0,
    "idle_workloads": 10000,
}


def get(data: dict, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return text + unit


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b in (None, 0):
        return None
    return a / b


def mb(value: int | float | None) -> float | None:
    return None if value is None else value / MB


# -- verdicts ----------------------------------------------------------------------------

def targets(results: dict) -> list[dict[str, Any]]:
    """One entry per target: what, target, measured, met (True/False/None when not measured)."""
    rows = []
    p_warm = get(results, "warm", "playbook", "wall_s")
    s_warm = get(results, "warm", "skopeo_sync", "wall_s")
    speedup = ratio(s_warm, p_warm)
    rows.append({"id": "warm_vs_sync", "what": "warm: playbook re-run vs skopeo sync re-run",
                 "target": f"≥ {TARGETS['warm_vs_sync']:g}× faster",
                 "measured": None if speedup is None else f"{speedup:.1f}× ({fmt(p_warm)} s vs {fmt(s_warm)} s)",
                 "value": speedup, "met": None if speedup is None else speedup >= TARGETS["warm_vs_sync"]})
    floor = get(results, "warm", "floor", "registry_requests")
    measured = get(results, "warm", "playbook", "backup_registry", "total")
    over = ratio(measured, floor)
    lists = get(results, "warm", "playbook", "api", "lists")
    floor_lists = get(results, "warm", "floor", "api_lists")
    over_lists = ratio(lists, floor_lists)
    worst = max([x for x in (over, over_lists) if x is not None], default=None)
    rows.append({"id": "warm_vs_floor", "what": "warm: playbook requests vs the floor",
                 "target": f"within {TARGETS['warm_vs_floor']:.0f}× of the floor",
                 "measured": None if over is None else
                 f"registry {measured} vs {floor} ({over:.2f}×); API LISTs {fmt(lists)} vs {fmt(floor_lists)} "
                 f"({fmt(over_lists)}×); workloads with a new resourceVersion "
                 f"{fmt(get(results, 'warm', 'playbook', 'objects_new_resource_version'))}",
                 "value": worst, "met": None if worst is None else worst <= TARGETS["warm_vs_floor"]})
    p_cold = get(results, "cold", "playbook", "wall_s")
    s_cold = get(results, "cold", "skopeo_sync", "wall_s")
    cold_speedup = ratio(s_cold, p_cold)
    rows.append({"id": "cold_vs_sync", "what": "cold: playbook vs skopeo sync",
                 "target": f"≥ {TARGETS['cold_vs_sync']:g}× faster",
                 "measured": None if cold_speedup is None else
                 f"{cold_speedup:.2f}× ({fmt(p_cold)} s vs {fmt(s_cold)} s)",
                 "value": cold_speedup,
                 "met": None if cold_speedup is None else cold_speedup >= TARGETS["cold_vs_sync"]})
    blob_ratio = get(results, "cold", "playbook", "blob_bytes_over_unique")
    stored = get(results, "cold", "playbook", "storage", "blob_bytes")
    unique = get(results, "setup", "unique_blobs", "bytes")
    rows.append({"id": "cold_bytes", "what": "cold: bytes written = unique blob bytes",
                 "target": "blob bytes stored = unique blob bytes",
                 "measured": None if blob_ratio is None else
                 f"{fmt(stored)} B stored vs {fmt(unique)} B unique ({blob_ratio:.4f}×); whole storage dir "
                 f"{fmt(get(results, 'cold', 'playbook', 'storage', 'bytes'))} B",
                 "value": blob_ratio, "met": None if blob_ratio is None else stored == unique})
    p99 = get(results, "controller", "latency_s", "p99")
    rows.append({"id": "controller_p99", "what": "controller: create→rewritten p99",
                 "target": f"≤ {TARGETS['controller_p99_s']:.0f} s",
                 "measured": None if p99 is None else
                 f"{p99:.2f} s (p50 {fmt(get(results, 'controller', 'latency_s', 'p50'))} s, "
                 f"{fmt(get(results, 'controller', 'deployments'))} Deployments)",
                 "value": p99, "met": None if p99 is None else p99 <= TARGETS["controller_p99_s"]})
    converged = get(results, "controller", "converged_s")
    burst_n = get(results, "controller", "deployments")
    complete = get(results, "controller", "missing") == 0
    rows.append({"id": "controller_burst", "what": f"controller: burst of {fmt(burst_n)} converged",
                 "target": f"≤ {TARGETS['controller_burst_s']:.0f} s for {TARGETS['controller_burst_size']:,}",
                 "measured": None if converged is None else
                 f"{converged:.1f} s ({fmt(get(results, 'controller', 'rewritten'))}/{fmt(burst_n)} rewritten)",
                 "value": converged,
                 "met": None if converged is None else (complete and converged <= TARGETS["controller_burst_s"])})
    rss_running = mb(get(results, "idle", "running", "rss_bytes"))
    rss_restart = mb(get(results, "idle", "restarted", "rss_bytes"))
    worst_rss = max([x for x in (rss_running, rss_restart) if x is not None], default=None)
    total = get(results, "idle", "total")
    rows.append({"id": "idle_rss", "what": f"controller: RSS idle at {fmt(total)} workloads",
                 "target": f"≤ {TARGETS['idle_rss_mb']:.0f} MB at {TARGETS['idle_workloads']:,}",
                 "measured": None if worst_rss is None else
                 f"{fmt(rss_running, 1)} MB running (filled while it ran), {fmt(rss_restart, 1)} MB after a restart",
                 "value": worst_rss, "met": None if worst_rss is None else worst_rss <= TARGETS["idle_rss_mb"]})
    for row in rows:
        row["verdict"] = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
    return rows


# -- the table ---------------------------------------------------------------------------

def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _runs(item: dict) -> str:
    walls = item.get("walls_s")
    return f" (runs {', '.join(fmt(w) for w in walls)})" if walls and len(walls) > 1 else ""


def cold_table(results: dict) -> str:
    cold = results.get("cold") or {}
    unique = get(results, "setup", "unique_blobs", "bytes")
    base = get(cold, "playbook", "wall_s")
    rows = []
    names = [("playbook", f"playbook, batch {fmt(get(cold, 'playbook', 'batch'))}"),
             ("playbook_small_batch", f"playbook, batch {fmt(get(cold, 'playbook_small_batch', 'batch'))}"),
             ("skopeo_sync", "skopeo sync --all"),
             ("naive_loop", f"naive loop ({fmt(get(cold, 'naive_loop', 'workers'))} workers)")]
    for key, label in names:
        item = cold.get(key)
        if not item:
            continue
        registry = item.get("backup_registry") or {}
        rows.append([label, fmt(item.get("wall_s")) + _runs(item), fmt(ratio(item.get("wall_s"), base), 2, "×"),
                     fmt(get(item, "cpu", "ours_s"), 1),
                     fmt(get(item, "storage", "blob_bytes")), fmt(get(item, "storage", "bytes")),
                     fmt(item.get("blob_bytes_over_unique"), 3, "×"),
                     fmt(registry.get("total")), fmt(registry.get("manifest_put")),
                     fmt(registry.get("blob_upload_put")), referrers_cell(item), fmt(item.get("objects_rewritten"))])
    header = ["cold, fresh backup registry", "wall s", "vs playbook", "CPU s", "blob bytes stored", "storage dir bytes",
              f"blobs / unique ({fmt(unique)} B)", "registry requests", "manifest PUTs", "blob uploads",
              "referrer requests (per image)", "workloads changed"]
    return _md(header, rows)


def referrers_cell(item: dict) -> str:
    """The requests spent on signatures and other referrers (both registries), and per distinct image."""
    referrers = item.get("referrers")
    if not referrers:
        return "n/a"
    return f"{fmt(referrers.get('total'))} ({fmt(referrers.get('per_image'), 2)})"


def changed(item: dict) -> int | None:
    """Workloads a run changed: any new resourceVersion when the cluster was quiet before the run, else
    spec/annotation changes (the controller manager may still have been writing status)."""
    if item.get("quiet_before"):
        return item.get("objects_new_resource_version")
    return item.get("objects_rewritten")


def warm_table(results: dict) -> str:
    warm = results.get("warm") or {}
    floor = warm.get("floor") or {}
    base = get(warm, "playbook", "wall_s")
    rows = []
    names = [("playbook", "playbook, batch W"), ("playbook_small_batch", "playbook, small batch"),
             ("skopeo_sync", "skopeo sync --all"), ("naive_loop", "naive loop"),
             ("engine_in_process", "engine pass in-process (no Ansible)")]
    for key, label in names:
        item = warm.get(key)
        if not item:
            continue
        registry = item.get("backup_registry") or {}
        by_method = registry.get("by_method") or {}
        methods = ", ".join(f"{m} {n}" for m, n in by_method.items())
        api = item.get("api") or {}
        rows.append([label, fmt(item.get("wall_s")) + _runs(item), fmt(ratio(item.get("wall_s"), base), 2, "×"),
                     fmt(get(item, "cpu", "ours_s"), 1), fmt(registry.get("total")),
                     methods or "-", fmt(registry.get("manifest_get")),
                     fmt(ratio(registry.get("total"), floor.get("registry_requests")), 2, "×"),
                     referrers_cell(item), fmt(api.get("lists")),
                     f"{fmt(api.get('write_requests'))} ({fmt(api.get('workload_patches'))})" if api else "n/a",
                     fmt(changed(item))])
    rows.append(["floor", "-", "-", "-", fmt(floor.get("registry_requests")), "HEAD", "0", "1.00×", "-",
                 fmt(floor.get("api_lists")), "0", "0"])
    header = ["warm re-run", "wall s", "vs playbook", "CPU s", "backup registry requests", "by method",
              "manifest GETs", "vs floor", "referrer requests (per image)", "API LISTs",
              "API writes (workload PATCHes)", "workloads changed"]
    return _md(header, rows)


def controller_table(results: dict) -> str:
    idle = results.get("idle") or {}
    rows = []
    for key in ("controller", "controller_more_workers"):
        ctrl = results.get(key) or {}
        if not ctrl:
            continue
        latency = ctrl.get("latency_s") or {}
        rows.append([f"burst of {fmt(ctrl.get('deployments'))} Deployments, --workers {fmt(ctrl.get('workers'))}",
                     fmt(ctrl.get("converged_s")),
                     f"{fmt(latency.get('p50'))} / {fmt(latency.get('p90'))} / {fmt(latency.get('p99'))} / "
                     f"{fmt(latency.get('max'))}",
                     f"{fmt(mb(ctrl.get('peak_rss_bytes')), 1)} (VmHWM)",
                     f"{fmt(ctrl.get('rewritten'))}/{fmt(ctrl.get('deployments'))} rewritten; created in "
                     f"{fmt(ctrl.get('create_s'))} s; CPU {fmt(ctrl.get('cpu_s'))} s; started on "
                     f"{fmt(ctrl.get('startup_objects'))} workloads, "
                     f"settled in {fmt(ctrl.get('startup_settled_s'))} s"])
    if idle:
        running, restarted = idle.get("running") or {}, idle.get("restarted") or {}
        rows.append([f"idle at {fmt(idle.get('total'))} workloads, running", "-", "-",
                     f"{fmt(mb(running.get('rss_bytes')), 1)} (VmRSS after {fmt(idle.get('idle_seconds'), 0)} s idle;"
                     f" VmHWM {fmt(mb(running.get('peak_rss_bytes')), 1)})",
                     f"started on {fmt(idle.get('startup_objects'))} workloads "
                     f"({fmt(mb(idle.get('startup_rss_bytes')), 1)} MB), "
                     f"{fmt(idle.get('created'))} added in {fmt(idle.get('create_s'))} s, queue drained "
                     f"{fmt(idle.get('drained_after_create_s'))} s after; idle CPU {fmt(idle.get('idle_cpu_s'))} s"])
        rows.append([f"idle at {fmt(idle.get('total'))} workloads, after a restart",
                     fmt(restarted.get("settled_s")), "-",
                     f"{fmt(mb(restarted.get('rss_bytes')), 1)} "
                     f"(VmRSS; VmHWM {fmt(mb(restarted.get('peak_rss_bytes')), 1)})",
                     f"start to all reconciled {fmt(restarted.get('settled_s'))} s, CPU "
                     f"{fmt(restarted.get('startup_cpu_s'))} s; idle CPU {fmt(restarted.get('idle_cpu_s'))} s"])
    header = ["controller", "converged s", "latency p50 / p90 / p99 / max s", "RSS MB", "notes"]
    return _md(header, rows)


def targets_table(results: dict) -> str:
    return _md(["target", "wanted", "measured", "verdict"],
               [[t["what"], t["target"], t["measured"] or "n/a", t["verdict"]] for t in targets(results)])


def table(results: dict) -> str:
    setup = results.get("setup") or {}
    meta = results.get("meta") or {}
    machine = meta.get("machine") or {}
    head = (f"image-clone benchmarks: {fmt(setup.get('workloads'))} workloads in {fmt(setup.get('namespaces'))} "
            f"namespaces, {fmt(setup.get('images'))} images ({fmt(setup.get('distinct_images_used'))} in use), "
            f"this machine ({machine.get('nproc')} cores, {machine.get('cpu_model')}), "
            f"run {meta.get('started')} in {fmt(meta.get('total_s'), 0)} s")
    parts = [head, "", cold_table(results), "", warm_table(results), "", controller_table(results), "",
             targets_table(results)]
    if results.get("errors"):
        parts += ["", "ERRORS in phases: " + ", ".join(results["errors"])]
    return "\n".join(parts)
