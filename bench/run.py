"""``python -m bench``: image-clone's benchmarks, all in one run on one isolated lab.

Phases (``--only`` picks one; the setup always runs):

* cold: fresh backup registry before each contender, workloads reset to their
  source images between contenders: the migrate playbook (batch W and batch
  25), ``skopeo sync`` of the same image list, a naive copy-and-patch loop
  (and its re-run, reported as warm); playbook and sync run A/B/.../B/A
  (``--cold-rounds``); wall time and bytes stored against the unique blob
  bytes of the images;
* warm: everything backed up and rewritten; playbook and skopeo sync re-runs
  interleaved (``--rounds``); backup-registry requests and API requests/writes
  against the floor; Ansible's fixed costs; the engine's own warm pass under
  cProfile;
* controller: ``imgCloneCtrl`` on the converged cluster, a burst of W new
  Deployments: time to converge, create->rewritten latency, peak RSS; again
  with ``--controller-workers`` workers;
* idle: the cluster filled to ``--idle-workloads``; controller RSS after idling,
  running and after a restart.

Absolute times are this machine's; ratios are computed within the run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils import factory
from bench import contenders, controller, profiling, report
from bench.env import SOURCE, BenchLab, counts_delta, cpu_delta, machine, referrer_requests, summarize, versions
from bench.workloads import (
    BENCH_KINDS,
    changed_objects,
    count_pointing_at,
    create_all,
    ensure_namespaces,
    namespaces,
    plan_workloads,
    reset,
    rewritten_mapping,
    rewritten_objects,
    settle,
    snapshot,
)
from lab.images import OciLayout, synthetic_images

REPO = Path(__file__).resolve().parent.parent
PHASES = ("cold", "warm", "controller", "idle")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", "-W", type=int, default=None, help="workloads to migrate (default 1000)")
    parser.add_argument("--images", "-I", type=int, default=None, help="distinct source images (default 200)")
    parser.add_argument("--namespaces", "-N", type=int, default=20, help="namespaces (default 20)")
    parser.add_argument("--only", choices=PHASES, help="run only this phase (after the setup)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results.json", help="where to write results")
    parser.add_argument("--quick", action="store_true", help="smoke run: W=100, I=30, shorter idle")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved warm rounds (playbook, sync)")
    parser.add_argument("--cold-rounds", type=int, default=2, help="cold runs of the playbook and of skopeo sync")
    parser.add_argument("--naive-workers", type=int, default=4,
                        help="workloads the naive loop processes at once (default 4; generous to it)")
    parser.add_argument("--idle-workloads", type=int, default=None, help="workloads in the idle phase (10000)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle time before reading RSS (30)")
    parser.add_argument("--small-batch", type=int, default=25, help="second playbook batch size (default 25)")
    parser.add_argument("--controller-workers", type=int, default=32,
                        help="a second burst with the controller's --workers at this (0: skip; default 32, "
                             "twice the controller's default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) for debugging")
    parser.add_argument("--copier", choices=("skopeo", "native"), default=factory.BackupOptions.copier,
                        help=f"the playbook's copier (imageclone_copier; default {factory.BackupOptions.copier}, "
                             "the collection's)")
    args = parser.parse_args(argv)
    args.workloads = args.workloads or (100 if args.quick else 1000)
    args.images = args.images or (30 if args.quick else 200)
    args.idle_workloads = args.idle_workloads or (1000 if args.quick else 10000)
    args.idle_seconds = args.idle_seconds if args.idle_seconds is not None else (5.0 if args.quick else 30.0)
    if args.quick:
        args.rounds = min(args.rounds, 2)
    return args


def combine(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one contender: the last run's details, the median wall time, every wall time."""
    walls = [item["wall_s"] for item in items]
    return {**items[-1], "wall_s": round(statistics.median(walls), 3), "walls_s": walls, "rounds": len(items),
            "runs_backup_registry_total": [item["backup_registry"]["total"] for item in items],
            "runs_cpu_ours_s": [item["cpu"]["ours_s"] for item in items],
            "runs_cpu_others_s": [item["cpu"]["others_s"] for item in items]}


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def unique_blobs(specs, directory: Path) -> dict[str, int]:
    """Sum of the distinct blobs (layers, configs, manifests, indexes) of ``specs``, from their OCI layout."""
    layout = OciLayout(directory)
    for spec in specs:
        layout.add(spec)
    files = list((directory / "blobs" / "sha256").iterdir())
    return {"count": len(files), "bytes": sum(f.stat().st_size for f in files)}


class Run:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.bl = BenchLab(tmp)
        self.results: dict[str, Any] = {}
        self.repo_playbook = ""
        self.phase_times: dict[str, float] = {}

    # -- setup -----------------------------------------------------------------------

    def setup(self) -> None:
        args, bl = self.args, self.bl
        log(f"isolated lab in {self.tmp}")
        up = bl.up()
        self.repo_playbook = f"{bl.backup}/imageclone/backup"
        log(f"lab up in {up:.1f}s; pushing {args.images} synthetic images")
        self.image_specs = synthetic_images(args.images)
        started = time.monotonic()
        for attempt in range(3):
            try:  # the registry occasionally answers 500 to concurrent pushes of a shared blob; pushes are idempotent
                self.digests = bl.lab.push_images(self.image_specs)
                break
            except RuntimeError as error:
                if attempt == 2:
                    raise
                log(f"push failed, again: {str(error)[-300:]}")
        push = time.monotonic() - started
        self.images = [f"{bl.source}/{spec.ref_name}" for spec in self.image_specs]
        blobs = unique_blobs(self.image_specs, self.tmp / "oci-count")
        shutil.rmtree(self.tmp / "oci-count", ignore_errors=True)
        api = bl.api()
        self.ns = namespaces("bench", args.namespaces)
        ensure_namespaces(api, self.ns)
        self.specs = plan_workloads(args.workloads, self.images, self.ns)
        log(f"creating {len(self.specs)} workloads in {len(self.ns)} namespaces")
        started = time.monotonic()
        create_all(api, self.specs, workers=8)
        create = time.monotonic() - started
        containers = [image for spec in self.specs for _, image in spec.containers]
        self.results["setup"] = {
            "lab_up_s": round(up, 3),
            "images": args.images,
            "multi_platform_images": sum(len(s.platforms) > 1 for s in self.image_specs),
            "push_s": round(push, 3),
            "unique_blobs": blobs,
            "unique_blobs_method": "sum of the blob files (layers, configs, manifests, indexes) of an OCI layout "
                                   "generated from the same deterministic image specs that were pushed with "
                                   "--preserve-digests",
            "workloads": len(self.specs),
            "namespaces": len(self.ns),
            "by_kind": dict(Counter(spec.kind for spec in self.specs)),
            "containers": len(containers),
            "distinct_images_used": len(set(containers)),
            "create_s": round(create, 3),
            "create_rate_per_s": round(len(self.specs) / create, 1),
        }
        log(f"setup: {json.dumps(self.results['setup'])}")

    # -- measuring one contender -------------------------------------------------------

    def measure(self, label: str, action, *, storage: bool = False, quiet: bool = False) -> dict[str, Any]:
        """Run ``action`` and measure it. ``quiet``: first wait until the controller manager has caught up
        (no workload's resourceVersion moving), so that a resourceVersion that moves is the contender's."""
        bl, api = self.bl, self.bl.api()
        settled = settle(api, prefix="bench-", timeout=300) if quiet else None
        state_before = snapshot(api, prefix="bench-")
        api_before = bl.apiserver_counts()
        mark, source_mark = bl.mark(), bl.mark(SOURCE)
        cpu_before, started = bl.cpu(), time.monotonic()
        result = action()
        result["cpu"] = cpu_delta(cpu_before, bl.cpu(), time.monotonic() - started)
        requests, server_time = bl.requests_since(mark)
        result["referrers"] = referrer_requests(bl.requests_since(source_mark, SOURCE)[0], requests,
                                                len(set(self.images)))
        api_after = bl.apiserver_counts()
        state_after = snapshot(api, prefix="bench-")
        result["backup_registry"] = summarize(requests, server_time)
        result["api"] = counts_delta(api_before, api_after)
        result["objects_new_resource_version"] = changed_objects(state_before, state_after)
        result["objects_rewritten"] = rewritten_objects(state_before, state_after)
        result["quiet_before"] = quiet
        if settled is not None:
            result["settled_before_s"] = round(settled, 1)
        result["workloads_on_playbook_backup"] = count_pointing_at(state_after, self.repo_playbook + ":")
        if storage:
            stored = bl.storage()
            result["storage"] = stored
            unique = self.results["setup"]["unique_blobs"]["bytes"]
            result["blob_bytes_over_unique"] = round(stored["blob_bytes"] / unique, 4)
            result["total_bytes_over_unique"] = round(stored["bytes"] / unique, 4)
        log(f"{label}: wall {result['wall_s']:.2f}s, registry requests {result['backup_registry']['total']}, "
            f"workload PATCHes {result['api']['workload_patches']}, rewritten {result['objects_rewritten']}, "
            f"new resourceVersion {result['objects_new_resource_version']}")
        return result

    def playbook(self, batch: int, label: str, quiet: bool = False) -> dict[str, Any]:
        # Cold runs time every skopeo call through a logging shim first on PATH (about 2 ms per call).
        shim = self.shim if label.startswith("cold") else None
        return self.measure(label, lambda: contenders.run_playbook(
            self.bl, self.tmp / "ansible", self.repo_playbook, batch, BENCH_KINDS, label, shim=shim,
            copier=self.args.copier),
            storage=label.startswith("cold"), quiet=quiet)

    def sync(self, label: str, quiet: bool = False) -> dict[str, Any]:
        return self.measure(label, lambda: contenders.skopeo_sync(
            self.bl, self.sync_yaml, f"{self.bl.backup}/sync", self.tmp / f"{label}.log"),
            storage=label.startswith("cold"), quiet=quiet)

    def naive(self, label: str) -> dict[str, Any]:
        return self.measure(label, lambda: contenders.naive_loop(self.bl, self.specs, self.args.naive_workers),
                            storage=label.startswith("cold"))

    def fresh(self) -> None:
        took = self.bl.fresh_backup_registry()
        log(f"fresh backup registry ({took:.1f}s)")

    def reset(self) -> None:
        took = reset(self.bl.api(), self.specs)
        log(f"workloads reset to their source images ({took:.1f}s)")

    # -- phases ----------------------------------------------------------------------

    def cold(self) -> None:
        """Contenders A/B/A/B where it matters: playbook and skopeo sync twice each, in the order P S ... S P.

        Cold runs do not wait for the controller manager: it trickles its follow-up writes (ReplicaSets,
        status) at its default 20 requests/s after every mass rewrite, as in a real cluster; contender
        writes are counted as PATCHes and as spec/annotation changes, which it never makes."""
        args = self.args
        self.sync_yaml = contenders.sync_source_yaml(self.bl, [s.ref_name for s in self.image_specs],
                                                     self.tmp / "images.yaml")
        self.shim, _ = contenders.skopeo_shim(self.tmp / "shim")
        cold: dict[str, Any] = {}
        runs: dict[str, list[dict[str, Any]]] = {"playbook": [], "skopeo_sync": []}
        self.fresh()
        runs["playbook"].append(self.playbook(args.workloads, "cold-playbook-0"))
        self.fresh()
        runs["skopeo_sync"].append(self.sync("cold-sync-0"))
        self.reset()
        self.fresh()
        cold["playbook_small_batch"] = self.playbook(args.small_batch, "cold-playbook-small-batch")
        cold["playbook_small_batch"]["batch"] = args.small_batch
        self.reset()
        self.fresh()
        cold["naive_loop"] = self.naive("cold-naive")
        # The naive loop's re-run needs the naive loop's state: measured now, reported under warm.
        self.results.setdefault("warm", {})["naive_loop"] = self.naive("warm-naive")
        for round_ in range(1, args.cold_rounds):
            self.fresh()
            runs["skopeo_sync"].append(self.sync(f"cold-sync-{round_}"))
            self.reset()
            self.fresh()
            runs["playbook"].append(self.playbook(args.workloads, f"cold-playbook-{round_}"))
        for name, items in runs.items():
            cold[name] = combine(items)
        cold["playbook"]["batch"] = args.workloads
        self.results["cold"] = cold

    def warm(self) -> None:
        args = self.args
        warm = self.results.setdefault("warm", {})
        if not hasattr(self, "sync_yaml"):
            # --only warm: bring the cluster to the converged state first.
            self.sync_yaml = contenders.sync_source_yaml(self.bl, [s.ref_name for s in self.image_specs],
                                                         self.tmp / "images.yaml")
            contenders.run_playbook(self.bl, self.tmp / "ansible", self.repo_playbook, args.workloads,
                                    BENCH_KINDS, "prepare")
        log("skopeo sync once so that its re-runs are warm")
        warm["skopeo_sync_prepare"] = self.sync("prepare-sync")
        runs: dict[str, list[dict[str, Any]]] = {"playbook": [], "skopeo_sync": []}
        for round_ in range(args.rounds):
            runs["playbook"].append(self.playbook(args.workloads, f"warm-playbook-{round_}", quiet=True))
            runs["skopeo_sync"].append(self.sync(f"warm-sync-{round_}", quiet=True))
        for name, items in runs.items():
            warm[name] = combine(items)
        warm["playbook_small_batch"] = self.playbook(args.small_batch, "warm-playbook-small-batch", quiet=True)
        warm["floor"] = {
            "registry_requests": len(set(self.images)),
            "api_lists": len(BENCH_KINDS),
            "api_writes": 0,
            "definition": "one manifest HEAD per distinct image in the backup registry, one LIST per workload "
                          "kind, no write",
        }
        log("Ansible's own floor: a one-task playbook, and a process importing the engine")
        warm["ansible_floor"] = contenders.ansible_floor(self.tmp / "ansible-floor")
        log("engine warm pass under cProfile")
        mark = self.bl.mark()
        engine = profiling.engine_pass(self.bl, self.repo_playbook, BENCH_KINDS)
        requests, server_time = self.bl.requests_since(mark)
        engine["backup_registry"] = summarize(requests, server_time)
        warm["engine_in_process"] = engine
        log(f"engine pass: {engine['wall_s']}s, phases {engine['phases_s']}")

    def controller(self) -> None:
        args, bl = self.args, self.bl
        api = bl.api()
        settle(api, prefix="bench-", timeout=300)
        state = snapshot(api, prefix="bench-")
        if count_pointing_at(state, self.repo_playbook + ":") < len(self.specs):
            log("migrating with the playbook first so that every image is backed up")
            contenders.run_playbook(bl, self.tmp / "ansible", self.repo_playbook, args.workloads, BENCH_KINDS,
                                    "controller-prepare")
            state = snapshot(api, prefix="bench-")
        self.mapping = rewritten_mapping(state)
        self.burst_workloads = 0
        for key, workers, prefix in (("controller", None, "burst"),
                                     ("controller_more_workers", args.controller_workers, "burstb")):
            if key != "controller" and not workers:
                continue
            log(f"controller burst: {args.workloads} Deployments, {workers or 'default'} workers")
            result = controller.burst(bl, self.tmp, self.repo_playbook, self.images, args.workloads,
                                      args.namespaces, existing=len(self.specs) + self.burst_workloads,
                                      timeout=300, workers=workers, prefix=prefix)
            self.burst_workloads += args.workloads
            self.results[key] = result
            log(f"burst: converged in {result['converged_s']}s, p50 {result['latency_s']['p50']}s, "
                f"p99 {result['latency_s']['p99']}s, peak RSS {result['peak_rss_bytes']}")

    def idle(self) -> None:
        args, bl = self.args, self.bl
        if not hasattr(self, "mapping"):
            self.controller()
        existing = len(self.specs) + self.burst_workloads
        log(f"idle: controller on {existing} workloads, then the cluster filled to {args.idle_workloads}")
        self.results["idle"] = controller.idle(bl, self.tmp, self.repo_playbook, self.mapping, self.images,
                                               existing, args.idle_workloads, args.namespaces, args.idle_seconds)
        idle = self.results["idle"]
        idle["logs"] = {name: controller.log_problems(self.tmp / name)
                        for name in ("controller-idle.log", "controller-restart.log")}
        log(f"idle: RSS running {idle['running']['rss_bytes']}, after restart {idle['restarted']['rss_bytes']}")

    # -- the whole run ---------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        self.results["meta"] = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": ["python", "-m", "bench", *sys.argv[1:]],
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": machine(),
            "kinds": list(BENCH_KINDS),
            "loadavg_start": _loadavg(),
        }
        try:
            try:
                self.setup()
            except Exception:  # noqa: BLE001 - recorded; no phase can run without the setup
                self.results.setdefault("errors", {})["setup"] = traceback.format_exc()[-4000:]
                log(f"setup failed:\n{self.results['errors']['setup']}")
                return self.results
            self.results["meta"]["versions"] = versions(self.bl.lab)
            phases = [args.only] if args.only else list(PHASES)
            for phase in phases:
                t = time.monotonic()
                try:
                    getattr(self, phase)()
                except Exception as error:  # noqa: BLE001 - record it, keep the other phases' figures
                    log(f"phase {phase} failed: {error}")
                    self.results.setdefault("errors", {})[phase] = traceback.format_exc()[-4000:]
                self.phase_times[phase] = round(time.monotonic() - t, 1)
        finally:
            if args.keep and (self.bl.lab.state / "logs").exists():
                shutil.copytree(self.bl.lab.state / "logs", self.tmp / "lab-logs", dirs_exist_ok=True)
            self.bl.down()
        self.results["meta"]["loadavg_end"] = _loadavg()
        self.results["meta"]["phase_s"] = self.phase_times
        self.results["meta"]["total_s"] = round(time.monotonic() - started, 1)
        return self.results


def _loadavg() -> list[float]:
    """1, 5 and 15 minute load averages: other work on this 2-core machine shows up here."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    profile = argparse.ArgumentParser(add_help=False)
    profile.add_argument("--profile", choices=("loopback", "wan"), default="loopback")
    chosen, rest = profile.parse_known_args(sys.argv[1:] if argv is None else argv)
    if chosen.profile == "wan":
        from bench import wan

        return wan.main(rest)
    args = parse_args(rest)
    tmp = Path(tempfile.mkdtemp(prefix="image-clone-bench-"))
    try:
        results = Run(args, tmp).run()
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print()
    print(report.table(results))
    log(f"results written to {args.json}")
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
