"""The isolated lab a benchmark run owns, and what is measured on it.

``BenchLab`` wraps ``lab.lab.Lab`` rooted in a temporary directory: nothing of
the shared lab (``.lab``) is read or written. Measurements:

* the backup registry's access log, read from a byte offset (``mark``) so a
  phase sees only its own requests, with the server-side duration of each
  request taken from the registry's ``response completed`` lines;
* the backup registry's storage (file sizes under its ``data`` directory);
* the API server's own ``apiserver_request_total`` counters (``/metrics``),
  by verb and resource, so API reads and writes are counted server-side;
* every workload's ``resourceVersion``, to count objects actually changed.
"""
from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lab.collection import import_engine
from lab.lab import COMPONENTS, Lab, RegistryRequest, parse_access_log

import_engine()

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, Timeouts  # noqa: E402

BACKUP = "registry-backup"
SOURCE = "registry-source"
_COMPLETED = re.compile(r'msg="response completed".*?http\.response\.duration=(?P<duration>\S+)')
_DURATION = re.compile(r"([0-9.]+)(ns|µs|us|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SAMPLE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)
_REFERRER_TAG = re.compile(r"/manifests/[a-z0-9]+-[0-9a-f]{32,}(?:\.(?:sig|att|sbom))?$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WORKLOAD_RESOURCES = ("deployments", "statefulsets", "daemonsets", "cronjobs", "jobs", "replicasets", "pods")


def go_duration(text: str) -> float:
    """Seconds in a Go duration string such as ``3.44ms``, ``812µs`` or ``1m2.5s``."""
    return sum(float(value) * _UNITS[unit] for value, unit in _DURATION.findall(text))


class BenchLab:
    """One isolated lab under ``root`` plus the measuring helpers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lab = Lab(root / "lab", with_node=False)  # the benchmarks run no pods
        self._api: KubeApi | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def up(self) -> float:
        started = time.monotonic()
        self.lab.up()
        return time.monotonic() - started

    def down(self) -> None:
        self.lab.down()

    def fresh_backup_registry(self) -> float:
        """Stop the backup registry, delete its storage and start it again (same port, same login)."""
        started = time.monotonic()
        self.lab.stop_component(BACKUP)
        shutil.rmtree(self.backup_data_dir, ignore_errors=True)
        self.lab.up()
        return time.monotonic() - started

    @property
    def backup_data_dir(self) -> Path:
        return self.lab.state / BACKUP / "data"

    @property
    def source(self) -> str:
        return self.lab.config.source_registry

    @property
    def backup(self) -> str:
        return self.lab.config.backup_registry

    # -- Kubernetes --------------------------------------------------------------------

    def api(self) -> KubeApi:
        """A KubeApi for the benchmark's own setup and checks (admin kubeconfig)."""
        if self._api is None:
            self._api = self.lab.admin_api("bench-setup", timeouts=Timeouts(read=120))
            # Setup creates workloads from many threads at once: one pooled connection each.
            client = self._api.api_client
            client.configuration.connection_pool_maxsize = 32
            client.rest_client.pool_manager.connection_pool_kw["maxsize"] = 32
        return self._api

    def apiserver_counts(self) -> Counter:
        """``apiserver_request_total`` summed by (verb, resource) for workload resources, main resource only."""
        text = self.api().text("/metrics")
        counts: Counter = Counter()
        for match in _SAMPLE.finditer(text):
            labels = dict(_LABEL.findall(match["labels"]))
            if labels.get("resource") in WORKLOAD_RESOURCES and not labels.get("subresource"):
                counts[(labels.get("verb", "?"), labels["resource"])] += int(float(match["value"]))
        return counts

    # -- CPU accounting --------------------------------------------------------------------

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: each lab daemon, this process and its waited-for descendants (ansible-playbook,
        its modules and their skopeo processes, skopeo sync...), and the whole machine (busy and total)."""
        snapshot = {name: proc_cpu(pid) for name in COMPONENTS if (pid := self.lab.daemons.pid(name))}
        children, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        snapshot["contender"] = children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime
        snapshot.update(machine_cpu())
        return snapshot

    # -- backup registry ---------------------------------------------------------------

    def mark(self, registry: str = BACKUP) -> int:
        """A position in a registry's log (the backup's unless told); ``requests_since`` reads what follows."""
        log = self.lab.daemons.log_file(registry)
        return log.stat().st_size if log.exists() else 0

    def _log_since(self, mark: int, registry: str = BACKUP) -> str:
        log = self.lab.daemons.log_file(registry)
        with open(log, "rb") as handle:
            handle.seek(mark)
            return handle.read().decode(errors="replace")

    def requests_since(self, mark: int, registry: str = BACKUP) -> tuple[list[RegistryRequest], float]:
        """Access-log requests after ``mark`` and the summed server-side time spent on them (seconds)."""
        text = self._log_since(mark, registry)
        requests = parse_access_log(text)
        server_time = sum(go_duration(m["duration"]) for m in _COMPLETED.finditer(text))
        return requests, server_time

    def storage(self) -> dict[str, int]:
        """Bytes and files under the backup registry's storage directory (apparent sizes)."""
        totals = {"bytes": 0, "files": 0, "blob_bytes": 0, "blob_files": 0}
        for directory, _, files in os.walk(self.backup_data_dir):
            in_blobs = f"{os.sep}blobs{os.sep}" in directory + os.sep
            for name in files:
                size = os.lstat(os.path.join(directory, name)).st_size
                totals["bytes"] += size
                totals["files"] += 1
                if in_blobs and name == "data":
                    totals["blob_bytes"] += size
                    totals["blob_files"] += 1
        return totals


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu() -> dict[str, float]:
    """Busy and total CPU seconds of the whole machine (all cores) from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return {"machine_busy": (total - idle) / hz, "machine_total": total / hz}


def cpu_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    """CPU seconds used during a run, by whom, and how busy the machine was."""
    used = {key: round(after[key] - before.get(key, 0.0), 3) for key in after
            if key not in ("machine_busy", "machine_total")}
    ours = sum(used.values())
    busy = after["machine_busy"] - before["machine_busy"]
    total = after["machine_total"] - before["machine_total"]
    return {"by_process_s": used, "ours_s": round(ours, 3), "machine_busy_s": round(busy, 3),
            "others_s": round(max(0.0, busy - ours), 3),
            "machine_utilization": round(busy / total, 3) if total else None,
            "wall_s": round(wall, 3)}


def summarize(requests: list[RegistryRequest], server_time: float | None = None) -> dict[str, Any]:
    """Counts a phase's registry requests by method and by what they touch."""
    by_method = Counter(r.method for r in requests)
    manifests = [r for r in requests if "/manifests/" in r.path]
    blobs = [r for r in requests if "/blobs/" in r.path and "/uploads/" not in r.path]
    summary = {
        "total": len(requests),
        "by_method": dict(sorted(by_method.items())),
        "manifest_get": sum(r.method == "GET" for r in manifests),
        "manifest_head": sum(r.method == "HEAD" for r in manifests),
        "manifest_put": sum(r.method == "PUT" for r in manifests),
        "blob_head": sum(r.method == "HEAD" for r in blobs),
        "blob_get": sum(r.method == "GET" for r in blobs),
        "blob_upload_start": sum(r.method == "POST" and "/blobs/uploads/" in r.path for r in requests),
        "blob_upload_put": sum(r.method == "PUT" and "/blobs/uploads/" in r.path for r in requests),
        "auth_challenges": sum(r.status == 401 for r in requests),
        "ping": sum(r.path == "/v2/" for r in requests),
    }
    if server_time is not None:
        summary["server_seconds"] = round(server_time, 3)
    return summary


def referrer_requests(source: list[RegistryRequest], backup: list[RegistryRequest], images: int) -> dict[str, Any]:
    """What finding and copying signatures, attestations and SBOMs cost: the source's tag list pages, and the
    manifest requests of both registries on referrer tags (``sha256-<hex>``, ``.sig``, ``.att``, ``.sbom``)."""
    def on_referrer_tags(requests: list[RegistryRequest]) -> list[RegistryRequest]:
        return [r for r in requests if _REFERRER_TAG.search(r.path) and r.status != 401]

    tag_lists = sum("/tags/list" in r.path and r.status != 401 for r in source)
    source_tags, backup_tags = on_referrer_tags(source), on_referrer_tags(backup)
    total = tag_lists + len(source_tags) + len(backup_tags)
    return {
        "total": total,
        "per_image": round(total / images, 3) if images else None,
        "source_tag_lists": tag_lists,
        "source_manifest_requests": len(source_tags),
        "backup_manifest_heads": sum(r.method == "HEAD" for r in backup_tags),
        "backup_manifest_puts": sum(r.method == "PUT" for r in backup_tags),
    }


def counts_delta(before: Counter, after: Counter) -> dict[str, Any]:
    """API server requests between two ``apiserver_counts`` snapshots, by verb and verb/resource."""
    delta = {key: after[key] - before.get(key, 0) for key in after if after[key] - before.get(key, 0) > 0}
    by_verb: Counter = Counter()
    for (verb, _), value in delta.items():
        by_verb[verb] += value
    writes = sum(v for verb, v in by_verb.items() if verb in ("CREATE", "PATCH", "UPDATE", "APPLY", "DELETE",
                                                              "DELETECOLLECTION", "POST", "PUT"))
    return {
        "by_verb": dict(sorted(by_verb.items())),
        "by_verb_resource": {f"{verb} {resource}": value for (verb, resource), value in sorted(delta.items())},
        "lists": by_verb.get("LIST", 0),
        "gets": by_verb.get("GET", 0),
        "write_requests": writes,
        # PATCH is what every contender writes with; the controller manager creates and updates instead.
        "workload_patches": sum(v for (verb, resource), v in delta.items()
                                if verb == "PATCH" and resource in WORKLOAD_RESOURCES[:4]),
    }


def machine() -> dict[str, Any]:
    """What this machine is: the figures are this machine's."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": sys.version.split()[0]}
    try:
        meminfo = Path("/proc/meminfo").read_text()
        info["mem_total_gib"] = round(int(re.search(r"MemTotal:\s+(\d+)", meminfo)[1]) / 2**20, 1)
    except (OSError, TypeError):
        pass
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = re.search(r"model name\s*:\s*(.*)", cpuinfo)[1].strip()
    except (OSError, TypeError):
        info["cpu_model"] = platform.processor() or "unknown"
    return info


def versions(lab: Lab) -> dict[str, str]:
    def first_line(*argv: str) -> str:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (result.stdout or result.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    bin_dir = Path(lab.config.bin_dir)
    bindir = Path(sys.executable).parent
    return {
        "skopeo": first_line("skopeo", "--version"),
        "kube-apiserver": first_line(str(bin_dir / "kube-apiserver"), "--version"),
        "etcd": first_line(str(bin_dir / "etcd"), "--version"),
        "docker-registry": first_line("docker-registry", "--version"),
        "python": sys.version.split()[0],
        "ansible-core": first_line(str(bindir / "ansible-playbook"), "--version"),
    }
