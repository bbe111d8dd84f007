"""The watcher controller (``imgCloneCtrl``) under a burst of new Deployments, then idle at scale.

Burst: the controller runs against the whole isolated cluster with every
image already backed up; W new Deployments (source images) are created as
fast as 8 client threads can; a separate watcher process records when each
is first seen rewritten. Latency is the client-side create timestamp (the
moment the POST is sent) to that first sighting.

Idle: the cluster is filled up to ``idle_target`` workloads (created already
pointing at their verified backups, as after a migration), the controller's
queue drains, then after ``idle_seconds`` of quiet its VmRSS is read from
``/proc``. The controller is then restarted on that cluster, so the figure at
scale is also measured from a cold start (list, reconcile everything, idle).
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from bench.env import BenchLab, counts_delta, cpu_delta, proc_cpu, summarize
from bench.workloads import (
    KIND_MIX,
    WorkloadSpec,
    create_all,
    ensure_namespaces,
    namespaces,
    plan_workloads,
)
from imageclone_controller.config import DEFAULT_WORKERS
from lab.collection import REPO
from lab.controller_process import ControllerProcess, Samples, metric_total
from lab.processes import resident_memory


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (p99 of 1,000 values is the 990th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def start_controller(bl: BenchLab, repository: str, workdir: Path, name: str,
                     workers: int | None = None) -> ControllerProcess:
    """The controller on the whole isolated cluster, text logs in ``workdir``."""
    args = [f"--workers={workers}"] if workers else []
    return ControllerProcess(bl.lab, workdir, namespaces=None, lease_namespace="default",
                             lease_id="image-clone-bench", repository=repository, args=args, name=name,
                             log_format="text").start()


def metric_summary(samples: Samples) -> dict[str, Any]:
    reconciles: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "imageclone_reconcile_total":
            result = dict(labels).get("result", "?")
            reconciles[result] = reconciles.get(result, 0) + value
    return {
        "reconciles": reconciles,
        "kube_writes": metric_total(samples, "imageclone_kube_writes_total"),
        "registry_requests": metric_total(samples, "imageclone_registry_requests_total"),
        "image_backups": {dict(ls).get("state", "?"): v for (n, ls), v in samples.items()
                          if n == "imageclone_image_backups_total"},
        "informer_objects": metric_total(samples, "imageclone_informer_objects"),
        "rewrite_latency_count": metric_total(samples, "imageclone_rewrite_latency_seconds_count"),
        "rewrite_latency_sum": metric_total(samples, "imageclone_rewrite_latency_seconds_sum"),
        "reconcile_duration_count": metric_total(samples, "imageclone_reconcile_duration_seconds_count"),
        "reconcile_duration_sum": metric_total(samples, "imageclone_reconcile_duration_seconds_sum"),
    }


def _diff(after: dict, before: dict) -> dict:
    out = {}
    for key, value in after.items():
        if isinstance(value, dict):
            out[key] = _diff(value, before.get(key, {}))
        else:
            out[key] = round(value - before.get(key, 0), 3)
    return out


def burst(bl: BenchLab, workdir: Path, repository: str, source_images: Sequence[str], count: int, ns_count: int,
          existing: int, timeout: float, workers: int | None = None, prefix: str = "burst") -> dict[str, Any]:
    """Start the controller on the converged cluster, create ``count`` Deployments at once in namespaces
    ``<prefix>-NN``, measure, stop the controller."""
    api = bl.api()
    burst_ns = namespaces(prefix, ns_count)
    ensure_namespaces(api, burst_ns)
    ctrl = start_controller(bl, repository, workdir, f"controller-{prefix}", workers)
    result: dict[str, Any] = {"argv": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(ctrl.argv)),
                              "workers": workers or DEFAULT_WORKERS}
    try:
        _burst(bl, workdir, ctrl, result, repository, source_images, count, burst_ns, existing, timeout, prefix)
    finally:
        result["exit_code"] = ctrl.stop()
        result["log"] = log_problems(ctrl.log_path)
    return result


def _burst(bl: BenchLab, workdir: Path, ctrl: ControllerProcess, result: dict[str, Any], repository: str,
           source_images: Sequence[str], count: int, burst_ns: list[str], existing: int, timeout: float,
           prefix: str) -> None:
    api = bl.api()
    startup = ctrl.wait_settled(existing, timeout=max(120.0, existing / 20))
    result["startup_settled_s"] = round(startup, 3)
    result["startup_objects"] = existing
    result["startup_rss_bytes"] = resident_memory(ctrl.pid).get("VmRSS")
    before = metric_summary(ctrl.metrics())
    result["startup_metrics"] = before

    specs = plan_workloads(count, source_images, burst_ns, seed=11, kinds=(("Deployment", 1),), prefix="b")
    out = workdir / f"watch-{prefix}.json"
    watcher = subprocess.Popen(
        [sys.executable, "-m", "bench.watcher", f"--kubeconfig={bl.lab.kubeconfig}", f"--prefix={prefix}-",
         f"--repository={repository}", f"--expect={count}", f"--timeout={timeout}", f"--out={out}"],
        stdout=subprocess.PIPE, stderr=open(workdir / f"watcher-{prefix}.err", "wb"), cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    try:
        if watcher.stdout.readline().strip() != "ready":
            raise RuntimeError(f"watcher did not start: {(workdir / f'watcher-{prefix}.err').read_text()[-2000:]}")
        mark, api_before = bl.mark(), bl.apiserver_counts()
        cpu_before = proc_cpu(ctrl.pid)
        lab_cpu_before = bl.cpu()
        started = time.monotonic()
        times = create_all(api, specs, workers=8)
        result["create_s"] = round(time.monotonic() - started, 3)
        watcher.wait(timeout + 60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    result["cpu_s"] = round(proc_cpu(ctrl.pid) - cpu_before, 3)
    cpu = cpu_delta(lab_cpu_before, bl.cpu(), time.monotonic() - started)
    cpu["by_process_s"]["controller"] = result["cpu_s"]  # not a waited-for child yet: counted apart
    cpu["ours_s"] = round(cpu["ours_s"] + result["cpu_s"], 3)
    cpu["others_s"] = round(max(0.0, cpu["others_s"] - result["cpu_s"]), 3)
    result["cpu"] = cpu
    watched = json.loads(out.read_text())
    seen = watched["rewritten"]
    sent = {f"{s.namespace}/{s.name}": times[s.key][0] for s in specs if s.key in times}
    acked = {f"{s.namespace}/{s.name}": times[s.key][1] for s in specs if s.key in times}
    latencies = [seen[k] - sent[k] for k in sent if k in seen]
    from_ack = [max(0.0, seen[k] - acked[k]) for k in acked if k in seen]
    first_sent = min(sent.values())
    after = metric_summary(ctrl.metrics())
    requests, server_time = bl.requests_since(mark)
    status = resident_memory(ctrl.pid)
    result.update({
        "deployments": count,
        "rewritten": len(seen),
        "missing": count - len(seen),
        "converged_s": round(max(seen.values()) - first_sent, 3) if seen else None,
        "create_rate_per_s": round(count / result["create_s"], 1) if result["create_s"] else None,
        "latency_s": {"p50": _r(quantile(latencies, 0.50)), "p90": _r(quantile(latencies, 0.90)),
                      "p99": _r(quantile(latencies, 0.99)), "max": _r(max(latencies) if latencies else None)},
        "latency_from_ack_s": {"p50": _r(quantile(from_ack, 0.50)), "p99": _r(quantile(from_ack, 0.99))},
        "watch_events": watched["events"],
        "peak_rss_bytes": status.get("VmHWM"),
        "rss_bytes": status.get("VmRSS"),
        "metrics": _diff(after, before),
        "backup_registry": summarize(requests, server_time),
        "api": counts_delta(api_before, bl.apiserver_counts()),
    })


def idle(bl: BenchLab, workdir: Path, repository: str, mapping: dict[str, str], source_images: Sequence[str],
         existing: int, target: int, ns_count: int, idle_seconds: float) -> dict[str, Any]:
    """Start the controller on ``existing`` workloads, fill the cluster to ``target`` (pre-rewritten), idle,
    read its RSS; then restart it on the full cluster, idle, read it again."""
    api = bl.api()
    fill = max(0, target - existing)
    idle_ns = namespaces("idle", ns_count)
    ensure_namespaces(api, idle_ns)
    usable = [image for image in source_images if image in mapping]
    specs = plan_workloads(fill, usable, idle_ns, seed=13, kinds=KIND_MIX, prefix="i")
    rewritten_specs = [WorkloadSpec(s.kind, s.namespace, s.name,
                                    tuple((c, mapping[image]) for c, image in s.containers)) for s in specs]
    originals = {s.key: json.dumps({"containers": dict(s.containers)}, sort_keys=True) for s in specs}
    ctrl = start_controller(bl, repository, workdir, "controller-idle")
    result: dict[str, Any] = {"created": fill, "total": target, "idle_seconds": idle_seconds}
    try:
        result["startup_settled_s"] = round(ctrl.wait_settled(existing, timeout=300), 3)
        result["startup_objects"] = existing
        result["startup_rss_bytes"] = resident_memory(ctrl.pid).get("VmRSS")
        before = metric_summary(ctrl.metrics())
        mark = bl.mark()
        started = time.monotonic()
        create_all(api, rewritten_specs, workers=8, annotate=lambda s: {ORIGINAL_IMAGES: originals[s.key]})
        result["create_s"] = round(time.monotonic() - started, 3)
        settle_start = time.monotonic()
        ctrl.wait_settled(target, timeout=600)
        result["drained_after_create_s"] = round(time.monotonic() - settle_start, 3)
        cpu_before = proc_cpu(ctrl.pid)
        time.sleep(idle_seconds)
        status = resident_memory(ctrl.pid)
        result["idle_cpu_s"] = round(proc_cpu(ctrl.pid) - cpu_before, 3)
        after = metric_summary(ctrl.metrics())
        requests, server_time = bl.requests_since(mark)
        result["running"] = {"rss_bytes": status.get("VmRSS"), "peak_rss_bytes": status.get("VmHWM"),
                             "metrics": _diff(after, before), "backup_registry": summarize(requests, server_time)}
    finally:
        result["running_exit_code"] = ctrl.stop()

    # The same cluster from a cold start: list everything, verify every backup once, then idle.
    again = start_controller(bl, repository, workdir, "controller-restart")
    try:
        mark = bl.mark()
        settled = again.wait_settled(target, timeout=900)
        cpu_settle = proc_cpu(again.pid)
        time.sleep(idle_seconds)
        status = resident_memory(again.pid)
        cpu_idle = proc_cpu(again.pid) - cpu_settle
        samples = again.metrics()
        requests, server_time = bl.requests_since(mark)
        result["restarted"] = {"settled_s": round(settled, 3), "rss_bytes": status.get("VmRSS"),
                               "startup_cpu_s": round(cpu_settle, 3), "idle_cpu_s": round(cpu_idle, 3),
                               "peak_rss_bytes": status.get("VmHWM"), "metrics": metric_summary(samples),
                               "backup_registry": summarize(requests, server_time)}
    finally:
        result["restarted_exit_code"] = again.stop()
    return result


def log_problems(path: Path) -> dict[str, int]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return {"lines": text.count("\n"), "errors": len(re.findall(r"\bERROR\b|level=error", text)),
            "tracebacks": text.count("Traceback")}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
