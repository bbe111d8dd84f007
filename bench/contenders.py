"""The three ways to back up a cluster's images that the benchmark compares.

* ``playbook``: ``ansible-playbook imageclone.backup.migrate`` (discover, HEAD-check
  and copy what is missing with skopeo, verify by digest, rewrite);
* ``skopeo_sync``: ``skopeo sync --all --src yaml --dest docker`` of the same image
  list, the usual "mirror a list of images" tool (it rewrites no workload);
* ``naive_loop``: what take-home controllers do: for every workload and every
  container ``skopeo copy --all`` (no existence check), then one patch per workload.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from bench.env import BenchLab
from bench.workloads import WorkloadSpec, parallel
from lab.collection import collections_root
from lab.workloads import images_patch

BIN = Path(sys.executable).parent


# -- the playbook ------------------------------------------------------------------------

def playbook_vars(bl: BenchLab, repository: str, batch: int, kinds: Sequence[str],
                  copier: str | None = None) -> dict[str, Any]:
    """The migrate playbook's variables; without ``copier``, the collection's default copier."""
    lab = bl.lab
    return {
        **({"imageclone_copier": copier} if copier else {}),
        "imageclone_backup_registry": repository,
        "imageclone_backup_authfile": str(lab.backup_authfile),
        "imageclone_certs_dir": str(lab.certs_dir),
        "imageclone_kubeconfig": str(lab.kubeconfig),
        "imageclone_kinds": list(kinds),
        "imageclone_batch_size": batch,
        "ansible_python_interpreter": sys.executable,
    }


def skopeo_shim(directory: Path) -> tuple[Path, Path]:
    """A ``skopeo`` first on PATH that logs start, end and exit code of every call, then runs the real one.

    The engine passes skopeo a filtered environment (PATH kept), so the log path is written into the shim.
    Returns (directory to prepend to PATH, timing log)."""
    real = shutil.which("skopeo")
    directory.mkdir(parents=True, exist_ok=True)
    timing = directory / "skopeo-calls.log"
    timing.write_text("")
    shim = directory / "skopeo"
    shim.write_text(f"""#!/bin/sh
start=$(date +%s.%N)
{real} "$@"
code=$?
echo "$start $(date +%s.%N) $code $1" >> {timing}
exit $code
""")
    shim.chmod(0o755)
    return directory, timing


def skopeo_calls(timing: Path) -> dict[str, Any]:
    """Count, summed and mean duration, and the wall span of the logged skopeo calls, plus peak concurrency."""
    calls = []
    for line in timing.read_text().splitlines():
        start, end, code, verb = line.split()[:4]
        calls.append((float(start), float(end), int(code), verb))
    if not calls:
        return {"calls": 0}
    durations = [end - start for start, end, _, _ in calls]
    edges = sorted([(start, 1) for start, _, _, _ in calls] + [(end, -1) for _, end, _, _ in calls])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return {"calls": len(calls), "failed": sum(code != 0 for _, _, code, _ in calls),
            "seconds_sum": round(sum(durations), 3), "seconds_mean": round(sum(durations) / len(calls), 4),
            "seconds_max": round(max(durations), 3),
            "span_s": round(max(end for _, end, _, _ in calls) - min(start for start, _, _, _ in calls), 3),
            "peak_concurrency": peak}


def run_playbook(bl: BenchLab, workdir: Path, repository: str, batch: int, kinds: Sequence[str],
                 label: str, shim: Path | None = None, copier: str | None = None) -> dict[str, Any]:
    """Run the migrate playbook once; wall time plus per-task durations from the ``ansible.posix.json`` callback.

    With ``shim`` (a directory from ``skopeo_shim``), skopeo calls are timed too."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = playbook_vars(bl, repository, batch, kinds, copier)
    path = f"{BIN}:{os.environ['PATH']}" if shim is None else f"{shim}:{BIN}:{os.environ['PATH']}"
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_root()),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_JSON_INDENT": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PATH": path,
    }
    argv = [str(BIN / "ansible-playbook"), "imageclone.backup.migrate", "-e", json.dumps(extra)]
    if shim is not None:
        (shim / "skopeo-calls.log").write_text("")
    started = time.monotonic()
    wall_started = time.time()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=workdir, timeout=1800)
    wall = time.monotonic() - started
    (workdir / f"{label}.stdout.json").write_text(result.stdout)
    (workdir / f"{label}.stderr.txt").write_text(result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"ansible-playbook ({label}) failed with {result.returncode}: "
                           f"{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    details = _playbook_details(result.stdout)
    first = details.pop("first_task_start", None)
    # From starting ansible-playbook to its first task (parsing, inventory, collection loading).
    details["startup_s"] = round(first - wall_started, 3) if first else None
    if shim is not None:
        details["skopeo"] = skopeo_calls(shim / "skopeo-calls.log")
    return {"wall_s": round(wall, 3), **details}


def ansible_floor(workdir: Path, runs: int = 2) -> dict[str, Any]:
    """What Ansible costs before any work: a localhost playbook of one ``ansible.builtin.ping`` task."""
    workdir.mkdir(parents=True, exist_ok=True)
    playbook = workdir / "noop.yml"
    playbook.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n"
                        "  tasks:\n    - ansible.builtin.ping:\n")
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    walls = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([str(BIN / "ansible-playbook"), "-e", f"ansible_python_interpreter={sys.executable}",
                        str(playbook)], capture_output=True, env=env, cwd=workdir, check=True, timeout=300)
        walls.append(round(time.monotonic() - started, 3))
    # A module process: a fresh interpreter importing the engine and the Kubernetes client.
    imports = []
    code = ("from ansible_collections.imageclone.backup.plugins.module_utils import factory, migration, workloads")
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(collections_root())},
                       check=True, capture_output=True, timeout=120)
        imports.append(round(time.monotonic() - started, 3))
    return {"noop_playbook_s": min(walls), "noop_playbook_runs_s": walls,
            "engine_import_process_s": min(imports), "engine_import_runs_s": imports}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _playbook_details(stdout: str) -> dict[str, Any]:
    """Task durations, the changed count, image states and workload states from the json callback."""
    document = json.loads(stdout[stdout.index("{"):])
    tasks: list[dict[str, Any]] = []
    images: Counter = Counter()
    workloads: Counter = Counter()
    first_start = None
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            info = task["task"]
            duration = info.get("duration") or {}
            if duration.get("start") and duration.get("end"):
                start, end = _ts(duration["start"]), _ts(duration["end"])
                first_start = start if first_start is None else min(first_start, start)
                tasks.append({"task": info["name"], "seconds": round(end - start, 3)})
            for host in task.get("hosts", {}).values():
                for item in host.get("results", [host]) if isinstance(host.get("results"), list) else [host]:
                    for entry in item.get("images", []) if isinstance(item.get("images"), list) else []:
                        if isinstance(entry, dict) and "state" in entry and "workloads" not in item:
                            images[entry["state"]] += 1
                    for entry in item.get("workloads", []) if isinstance(item.get("workloads"), list) else []:
                        if isinstance(entry, dict) and "state" in entry:
                            workloads[entry["state"]] += 1
    stats = document.get("stats", {})
    changed = sum(host.get("changed", 0) for host in stats.values())
    return {"tasks": tasks, "changed": changed, "image_states": dict(images), "workload_states": dict(workloads),
            "first_task_start": first_start}


# -- skopeo sync -------------------------------------------------------------------------

def sync_source_yaml(bl: BenchLab, ref_names: Sequence[str], path: Path) -> Path:
    """The ``--src yaml`` file listing every image (repository -> tags) of the source registry."""
    tags: dict[str, list[str]] = defaultdict(list)
    for ref_name in ref_names:
        repository, tag = ref_name.rsplit(":", 1)
        tags[repository].append(tag)
    document = {bl.source: {"images": dict(tags), "tls-verify": True, "cert-dir": str(bl.lab.certs_dir)}}
    path.write_text(yaml.safe_dump(document))
    return path


def skopeo_sync(bl: BenchLab, source_yaml: Path, destination: str, log: Path) -> dict[str, Any]:
    lab = bl.lab
    argv = ["skopeo", "sync", "--all", "--src", "yaml", "--dest", "docker",
            f"--src-cert-dir={lab.certs_dir}", f"--dest-cert-dir={lab.certs_dir}",
            f"--dest-authfile={lab.backup_authfile}", str(source_yaml), destination]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo sync failed ({result.returncode}): {result.stderr[-3000:]}")
    return {"wall_s": round(wall, 3), "argv": " ".join(argv[:2] + argv[2:-2]) + " <images.yaml> <backup>/sync"}


# -- the naive loop ----------------------------------------------------------------------

def naive_target(bl: BenchLab, image: str) -> str:
    """``<backup>/naive/<path with / as ->:<tag>``: how take-home controllers name backups."""
    path, tag = image.split("/", 1)[1].rsplit(":", 1)
    return f"{bl.backup}/naive/{path.replace('/', '-')}:{tag}"


def naive_loop(bl: BenchLab, specs: Sequence[WorkloadSpec], workers: int) -> dict[str, Any]:
    """Per workload: ``skopeo copy --all`` of each container's source image, then one strategic patch."""
    lab = bl.lab
    api = bl.api()
    copy_seconds: list[float] = []
    patch_seconds: list[float] = []
    lock = threading.Lock()

    def one(spec: WorkloadSpec) -> None:
        images = {}
        for container, image in spec.containers:
            target = naive_target(bl, image)
            started = time.monotonic()
            result = subprocess.run(
                ["skopeo", "copy", "--all", f"--src-cert-dir={lab.certs_dir}", f"--dest-cert-dir={lab.certs_dir}",
                 f"--dest-authfile={lab.backup_authfile}", f"docker://{image}", f"docker://{target}"],
                capture_output=True, text=True, timeout=600)
            elapsed = time.monotonic() - started
            if result.returncode != 0:
                raise RuntimeError(f"naive copy {image} failed: {result.stderr[-1000:]}")
            images[container] = target
            with lock:
                copy_seconds.append(elapsed)
        started = time.monotonic()
        api.patch(KINDS[spec.kind], spec.namespace, spec.name, images_patch(spec.kind, images.items()))
        with lock:
            patch_seconds.append(time.monotonic() - started)

    started = time.monotonic()
    parallel(one, specs, workers)
    wall = time.monotonic() - started
    return {
        "wall_s": round(wall, 3),
        "workers": workers,
        "copies": len(copy_seconds),
        "copy_seconds_sum": round(sum(copy_seconds), 3),
        "copy_seconds_mean": round(sum(copy_seconds) / max(1, len(copy_seconds)), 4),
        "patches": len(patch_seconds),
        "patch_seconds_sum": round(sum(patch_seconds), 3),
    }
