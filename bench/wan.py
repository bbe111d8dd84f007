"""``python -m bench --profile wan``: copies over a distant, bandwidth-limited link, as users have them.

The source registry sits behind toxiproxy (built from Go modules like the
lab's binaries), which adds ``--latency`` ms each way and limits every
connection to ``--rate`` KB/s. The images have realistic sizes: one shared
base layer, an own layer each, a quarter of them two-platform indexes.
Contenders, interleaved and each on a fresh backup registry when cold, then
re-run warm: the ``image_backup`` module in a one-task playbook with each
copier, and ``skopeo sync --all`` of the same list.

Per run: wall time, bytes fetched from the source against the unique blob
bytes, manifest GETs and all requests to the source, requests to the
backup, CPU (contender processes and the whole machine). Floors: cold, the
unique bytes over the link; warm, one HEAD per distinct image on the backup
and none on the source.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.contenders import BIN, sync_source_yaml
from bench.env import BenchLab, cpu_delta, proc_cpu, summarize
from bench.run import combine, log, unique_blobs
from lab.collection import collections_root
from lab.images import FastLayer, ImageSpec
from lab.lab import parse_access_log
from lab.toxiproxy import Toxiproxy

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
# Above this share of the machine's busy CPU time used by other work, wall times say more about the machine.
STARVED_SHARE = 0.25


def wan_images(count: int, base_mb: float, own_min_mb: float, own_max_mb: float, multi_every: int,
               seed: str) -> tuple[ImageSpec, ...]:
    """``count`` images sharing one base layer, each with an own layer of a size between the bounds."""
    sizes = random.Random(seed)
    base = FastLayer(f"wan-{seed}-base", int(base_mb * MB))
    return tuple(
        ImageSpec(f"wan/app{n}", "1.0",
                  (base, FastLayer(f"wan-{seed}-own-{n}", int(sizes.uniform(own_min_mb, own_max_mb) * MB))),
                  platforms=("amd64", "arm64") if multi_every and n % multi_every == 0 else ("amd64",))
        for n in range(count))


class LogWindow:
    """The requests a registry logs from now on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def requests(self) -> list:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return parse_access_log(handle.read().decode(errors="replace"))


class WanRun:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.bl = BenchLab(tmp)
        self.results: dict[str, Any] = {"profile": "wan"}

    def setup(self) -> None:
        args, bl = self.args, self.bl
        bl.up()
        self.toxiproxy = Toxiproxy(bl.lab).up()
        self.source = self.toxiproxy.proxy("source", bl.source)
        for stream in ("upstream", "downstream"):
            self.toxiproxy.add_toxic("source", "latency", {"latency": args.latency, "jitter": 0}, stream=stream)
        self.toxiproxy.add_toxic("source", "bandwidth", {"rate": args.rate})
        self.specs = wan_images(args.images, args.base_mb, args.own_min_mb, args.own_max_mb, args.multi_every,
                                seed=str(args.seed))
        started = time.monotonic()
        self.digests = bl.lab.push_images(self.specs, parallel=2)
        blobs = unique_blobs(self.specs, self.tmp / "oci-count")
        shutil.rmtree(self.tmp / "oci-count", ignore_errors=True)
        self.images = [f"{self.source}/{spec.ref_name}" for spec in self.specs]
        # skopeo sync reads the source through the proxy too: the same link for every contender.
        self.sync_yaml = sync_source_yaml(bl, [spec.ref_name for spec in self.specs], self.tmp / "images.yaml")
        document = yaml.safe_load(self.sync_yaml.read_text())
        self.sync_yaml.write_text(yaml.safe_dump({self.source: document[bl.source]}))
        self.results["setup"] = {
            "images": len(self.specs), "multi_platform_images": sum(len(s.platforms) > 1 for s in self.specs),
            "manifests": sum(len(s.platforms) + (len(s.platforms) > 1) for s in self.specs),
            "unique_blobs": blobs, "push_s": round(time.monotonic() - started, 1),
            "latency_ms_each_way": args.latency, "rate_kb_per_s_per_connection": args.rate,
            "base_mb": args.base_mb, "own_mb": [args.own_min_mb, args.own_max_mb],
        }
        log(f"wan setup: {json.dumps(self.results['setup'])}")

    def measure(self, label: str, action) -> dict[str, Any]:
        bl = self.bl
        source_log = LogWindow(bl.lab.daemons.log_file("registry-source"))
        backup_log = LogWindow(bl.lab.daemons.log_file("registry-backup"))
        proxy_pid = bl.lab.daemons.pid(self.toxiproxy.name)
        proxy_before = proc_cpu(proxy_pid) if proxy_pid else 0.0
        cpu_before, started = bl.cpu(), time.monotonic()
        result = action()
        result["wall_s"] = round(time.monotonic() - started, 3)
        result["cpu"] = cpu_delta(cpu_before, bl.cpu(), result["wall_s"])
        # The link itself costs CPU here (a real WAN's would not): reported apart from the others' share.
        result["cpu"]["toxiproxy_s"] = round((proc_cpu(proxy_pid) if proxy_pid else 0.0) - proxy_before, 2)
        time.sleep(0.5)  # the registries log a request once its answer is sent
        source = source_log.requests()
        result["source"] = summarize(source)
        result["source"]["bytes"] = sum(r.size for r in source if r.method == "GET")
        result["source"]["bytes_over_unique"] = round(
            result["source"]["bytes"] / self.results["setup"]["unique_blobs"]["bytes"], 4)
        result["backup_registry"] = summarize(backup_log.requests())
        log(f"{label}: wall {result['wall_s']:.2f}s, source {result['source']['bytes'] / MB:.1f} MB in "
            f"{result['source']['total']} requests ({result['source']['manifest_get']} manifest GETs), "
            f"backup {result['backup_registry']['total']} requests")
        return result

    def playbook(self, copier: str, label: str) -> dict[str, Any]:
        directory = self.tmp / "ansible"
        directory.mkdir(exist_ok=True)
        playbook = directory / "backup.yml"
        task = {"imageclone.backup.image_backup": {
            "images": self.images, "backup_registry": f"{self.bl.backup}/wan/{copier}",
            "backup_authfile": str(self.bl.lab.backup_authfile), "certs_dir": str(self.bl.lab.certs_dir),
            "copier": copier}}
        playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                                             "vars": {"ansible_python_interpreter": sys.executable},
                                             "tasks": [{"name": "Back up", **task}]}]))
        env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections_root()), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(directory / "tmp"), "PATH": f"{BIN}:{os.environ['PATH']}"}

        def run() -> dict[str, Any]:
            result = subprocess.run([str(BIN / "ansible-playbook"), str(playbook)], capture_output=True, text=True,
                                    env=env, cwd=directory, timeout=1800)
            (directory / f"{label}.log").write_text(result.stdout + result.stderr)
            if result.returncode != 0:
                raise RuntimeError(f"{label} failed: {result.stdout[-2000:]}")
            return {"copier": copier}

        return self.measure(label, run)

    def sync(self, label: str) -> dict[str, Any]:
        lab = self.bl.lab
        argv = ["skopeo", "sync", "--all", "--src", "yaml", "--dest", "docker", f"--dest-cert-dir={lab.certs_dir}",
                f"--dest-authfile={lab.backup_authfile}", str(self.sync_yaml), f"{self.bl.backup}/sync"]

        def run() -> dict[str, Any]:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
            if result.returncode != 0:
                raise RuntimeError(f"{label} failed: {result.stderr[-2000:]}")
            return {}

        return self.measure(label, run)

    def run(self) -> dict[str, Any]:
        self.setup()
        contenders = {"playbook_native": lambda label: self.playbook("native", label),
                      "playbook_skopeo": lambda label: self.playbook("skopeo", label),
                      "skopeo_sync": self.sync}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {"cold": {}, "warm": {}}
        for round_ in range(self.args.rounds):
            order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
            for name in order:
                self.bl.fresh_backup_registry()
                runs["cold"].setdefault(name, []).append(contenders[name](f"cold-{name}-{round_}"))
                runs["warm"].setdefault(name, []).append(contenders[name](f"warm-{name}-{round_}"))
        for phase, by_name in runs.items():
            self.results[phase] = {name: combine(items) for name, items in by_name.items()}
        self.results["rounds"] = self.args.rounds
        self.results["floor"] = {
            "cold_source_bytes": self.results["setup"]["unique_blobs"]["bytes"],
            "cold_source_manifest_gets": self.results["setup"]["manifests"],
            "warm_backup_requests": len(self.specs), "warm_source_requests": 0,
        }
        self.toxiproxy.down()
        self.bl.down()
        return self.results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --profile wan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--base-mb", type=float, default=24.0, help="the shared base layer (default 24 MB)")
    parser.add_argument("--own-min-mb", type=float, default=4.0)
    parser.add_argument("--own-max-mb", type=float, default=12.0)
    parser.add_argument("--multi-every", type=int, default=4, help="every Nth image has two platforms")
    parser.add_argument("--latency", type=int, default=20, help="ms added each way (default 20)")
    parser.add_argument("--rate", type=int, default=25000, help="KB/s per connection (default 25000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results-wan.json")
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="image-clone-bench-wan-"))
    try:
        results = WanRun(args, tmp).run()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    log(f"results written to {args.json}")
    return 0


def _row(name: str, item: dict[str, Any], sync_wall: float, unique: int) -> str:
    source, backup, cpu = item["source"], item["backup_registry"], item["cpu"]
    walls = ", ".join(f"{wall:.2f}" for wall in item["walls_s"])
    return (f"| {name} | {item['wall_s']:.2f} ({walls}) | {sync_wall / item['wall_s']:.2f}× | "
            f"{cpu['by_process_s'].get('contender', 0):.1f} | {cpu.get('toxiproxy_s', 0):.1f} | "
            f"{cpu['others_s']:.1f} | {source['bytes'] / MB:.1f} | "
            f"{source['bytes'] / unique:.3f}× | {source['manifest_get']} | {source['manifest_head']} | "
            f"{source['total']} | {backup['total']} |")


def wan_text(r: dict[str, Any]) -> str:
    """The WAN profile's section of docs/benchmarks.md."""
    setup, floor = r["setup"], r["floor"]
    unique = setup["unique_blobs"]["bytes"]
    names = {"playbook_native": "playbook, `copier: native`", "playbook_skopeo": "playbook, `copier: skopeo`",
             "skopeo_sync": "skopeo sync --all"}
    lines = [
        "## WAN profile",
        "",
        "`PYTHONPATH=. .venv/bin/python -m bench --profile wan` (`make bench` runs it after the loopback profile). "
        f"The source registry sits behind toxiproxy, which adds {setup['latency_ms_each_way']} ms each way and "
        f"limits every connection to {setup['rate_kb_per_s_per_connection']:,} KB/s (`--latency`, `--rate`). "
        f"{setup['images']} images (`--images`): one {setup['base_mb']:g} MB base layer shared by all, an own layer "
        f"of {setup['own_mb'][0]:g} to {setup['own_mb'][1]:g} MB each, {setup['multi_platform_images']} of them "
        f"amd64+arm64 indexes: {setup['manifests']} manifests, {setup['unique_blobs']['count']} unique blobs of "
        f"{unique / MB:.1f} MB. Contenders, each cold on a fresh backup registry then re-run warm, in one run "
        f"({r['rounds']} round(s), order reversed every other round): the `image_backup` module in a one-task "
        "playbook with the image list, with each copier, and `skopeo sync --all` of the same list. Bytes and "
        "requests are read from the registries' access logs; *CPU contender* is the contender's processes "
        "(Ansible, its module, skopeo), *CPU toxiproxy* the emulated link's, *CPU others* what the rest of the "
        "machine used meanwhile (toxiproxy included).",
        "",
    ]
    for phase in ("cold", "warm"):
        sync_wall = r[phase]["skopeo_sync"]["wall_s"]
        lines += [f"### {phase.capitalize()}", "",
                  "| contender | wall s (runs) | sync ÷ it | CPU contender s | CPU toxiproxy s | CPU others s "
                  "| source MB | source / unique | source manifest GETs | source manifest HEADs | source requests "
                  "| backup requests |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [_row(names[name], item, sync_wall, unique) for name, item in r[phase].items()]
        lines.append("")
    lines += [
        f"Floors: cold, {floor['cold_source_bytes'] / MB:.1f} MB from the source (the unique blobs, 1.000×) and "
        f"{floor['cold_source_manifest_gets']} manifest GETs (one per manifest), plus the round trips of one "
        f"request per blob and manifest; warm, {floor['warm_backup_requests']} HEADs on the backup (one per "
        f"distinct image) and {floor['warm_source_requests']} requests to the source.",
        "",
        *_targets(r),
    ]
    return "\n".join(lines)


def _targets(r: dict[str, Any]) -> list[str]:
    """The issue's targets for the native copier against this run's figures, and how busy the machine was."""
    cold, warm = r["cold"]["playbook_native"], r["warm"]["playbook_native"]
    items = [item for phase in ("cold", "warm") for item in r[phase].values()]
    others = sum(item["cpu"]["others_s"] for item in items) / max(1e-9, sum(item["cpu"]["machine_busy_s"]
                                                                             for item in items))
    checks = [
        ("cold: ≥ 3× faster than skopeo sync", f"{r['cold']['skopeo_sync']['wall_s'] / cold['wall_s']:.2f}×",
         r["cold"]["skopeo_sync"]["wall_s"] / cold["wall_s"] >= 3),
        ("cold: source bytes ≤ 1.02× unique", f"{cold['source']['bytes_over_unique']:.3f}×",
         cold["source"]["bytes_over_unique"] <= 1.02),
        ("cold: one manifest GET per manifest", f"{cold['source']['manifest_get']} for {r['setup']['manifests']}",
         cold["source"]["manifest_get"] == r["setup"]["manifests"]),
        ("warm: ≥ 5× faster than the sync re-run", f"{r['warm']['skopeo_sync']['wall_s'] / warm['wall_s']:.2f}×",
         r["warm"]["skopeo_sync"]["wall_s"] / warm["wall_s"] >= 5),
        ("warm: 0 requests to the source", str(warm["source"]["total"]), warm["source"]["total"] == 0),
    ]
    starved = others >= STARVED_SHARE
    machine = "a starved machine" if starved else "a quiet machine"
    source = warm["source"]
    # Warm GETs that are neither manifests nor blobs: the look for signatures added upstream (tag lists).
    lookups = source["by_method"].get("GET", 0) - source["manifest_get"] - source["blob_get"]
    return [f"Targets for `copier: native` in this run (other work used {others:.0%} of the machine's busy CPU "
            f"time during it, so wall times are those of {machine}; bytes and requests do not depend on it):",
            "", "| target | this run | |", "|---|---|---|",
            *(f"| {name} | {value} | {'met' if met else 'missed'} |" for name, value, met in checks),
            "",
            f"Where the time goes: cold, the native copier moved exactly the unique bytes in "
            f"{cold['source']['total']} source requests, while skopeo sync copies one image at a time "
            "(latency-bound) and the skopeo copier's concurrent processes each fetch the shared base layer"
            f"{'; on this starved machine the copies wait for CPU more than for the link' if starved else ''}. "
            "Warm, the playbook's "
            f"{warm['cpu']['by_process_s'].get('contender', 0):.1f} s of CPU are Ansible's own start-up and the "
            f"module's import, against {r['warm']['skopeo_sync']['cpu']['by_process_s'].get('contender', 0):.1f} s "
            "for skopeo sync: that fixed cost, not the registries, bounds the warm ratio of a playbook. "
            f"Of the {source['total']} source requests of a warm run, {source['manifest_head']} are one HEAD per "
            "image referenced by tag (no manifest GET, which Docker Hub would count as a pull): a tag can move "
            "upstream, so it is checked; an image referenced by a digest its backup holds, and a workload already "
            f"rewritten to its backup, cost no HEAD. The other {lookups} look for signatures, attestations and "
            "SBOMs added upstream since the copy (a tag list per image, and one probe of the referrers API per "
            "registry); `referrers: false` drops them. Each of them waits a round trip of the emulated link "
            f"({2 * r['setup']['latency_ms_each_way']} ms), so besides Ansible's fixed cost they are what stands "
            "between the warm run and its floor."]
