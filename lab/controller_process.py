"""``imgCloneCtrl`` as a subprocess, for the tests and the benchmarks alike.

``ControllerProcess`` starts the console script from the venv against a lab
(kubeconfig, backup auth file and CA of the lab), logs to a file and serves
/metrics on a free loopback port; it reads back its metrics, probes and log
lines, and what the API server's audit log says it wrote.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from signal import SIGTERM
from typing import Any

from lab.collection import REPO, collections_root
from lab.processes import free_port
from lab.waiting import wait_for

BINARY = Path(sys.executable).parent / "imgCloneCtrl"
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def backup_repository(lab) -> str:
    """A fresh flat backup repository, so each test or run starts with nothing backed up."""
    return f"{lab.config.backup_registry}/ctrl/{uuid.uuid4().hex[:12]}"


def controller_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("IMAGECLONE_BACKUP_", "K8S_AUTH_")) and key != "KUBECONFIG"}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_root())
    env.update(extra)
    return env


def parse_metrics(text: str) -> Samples:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset(_LABEL.findall(match["labels"] or ""))
            samples[(match["name"], labels)] = float(match["value"])
    return samples


def metric_total(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent), or the sum over samples matching ``labels`` partially."""
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and wanted <= set(sample_labels))


class ControllerProcess:
    """One ``imgCloneCtrl``; unless ``namespaces`` is None (the whole cluster, for an isolated lab), it is
    scoped to those namespaces with ``--namespace``, so it never touches what others run in a shared lab."""

    def __init__(self, lab, log_dir: Path, *, namespaces: Iterable[str] | None, lease_namespace: str,
                 repository: str | None = None, lease_id: str = "image-clone-test", kubeconfig: Path | None = None,
                 args: Iterable[str] = (), env: Mapping[str, str] | None = None, authfile: bool = True,
                 name: str = "controller", log_format: str = "json") -> None:
        self.lab = lab
        self.repository = repository or backup_repository(lab)
        self.port = free_port()
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        argv = [str(BINARY), f"--backupRegistry={self.repository}", f"--certsDir={lab.certs_dir}",
                f"--kubeconfig={kubeconfig or lab.kubeconfig}", f"--metricsAddr=127.0.0.1:{self.port}",
                f"--logFormat={log_format}", f"--leaderElectionNamespace={lease_namespace}",
                f"--leaderElectionID={lease_id}"]
        if authfile:
            argv.append(f"--backupAuthFile={lab.backup_authfile}")
        if namespaces is not None:
            argv += [f"--namespace={namespace}" for namespace in namespaces]
        self.argv = argv + list(args)
        self.env = controller_env(**(env or {}))
        self.process: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> ControllerProcess:
        self._log = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                        stdin=subprocess.DEVNULL, cwd=REPO)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: int) -> None:
        if self.running():
            self.process.send_signal(sig)

    def stop(self, sig: int = SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the process and wait for it; SIGKILL if it lingers. Returns the exit code."""
        if self.process is None:
            return None
        if self.running():
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- observation -----------------------------------------------------------------

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, ""

    def metrics(self) -> Samples:
        status, body = self.get("/metrics", timeout=5.0)
        return parse_metrics(body) if status == 200 else {}

    def metric(self, name: str, **labels: str) -> float:
        return metric_total(self.metrics(), name, **labels)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def leader(self) -> bool:
        return self.metric("imageclone_leader") == 1

    def wait_leader_ready(self, timeout: float = 30.0) -> None:
        def leading() -> bool:
            self._fail_if_exited()
            return self.leader() and self.ready() and self.metric("imageclone_informer_synced") > 0

        wait_for(leading, "the controller to lead, synced and ready", timeout, explain=self._log_end)

    def _fail_if_exited(self) -> None:
        """A controller that exited never gets ready: fail at once with its last words."""
        if not self.running():
            raise AssertionError(f"the controller exited ({self.process.returncode}):\n{self._log_end()}")

    def _log_end(self) -> str:
        return self.log_text()[-3000:]

    @property
    def identity(self) -> str:
        """The identity it campaigns under, which its User-Agent carries to the API server's audit log."""
        for line in self.log_lines():
            if line.get("msg") == "image-clone controller starting":
                return line["identity"]
        raise AssertionError(f"the controller has not logged its start yet:\n{self.log_text()[-2000:]}")

    def stored_writes(self) -> list[dict[str, Any]]:
        """Its writes to workloads and Secrets that the API server accepted, from the audit log (refused
        ones, such as a 409 a resync racing the watch can cost, are requests but change nothing)."""
        return [event for event in self.lab.audit_events(self.identity)
                if event["objectRef"].get("resource") not in ("leases", "events")
                and event.get("responseStatus", {}).get("code", 0) < 300]

    def wait_settled(self, objects: int, timeout: float) -> float:
        """Wait until leader, synced, ``objects`` workloads cached and the queue empty for a second;
        returns the seconds from start to that quiet."""
        quiet_since: float | None = None

        def quiet_for_a_second() -> float | None:
            nonlocal quiet_since
            self._fail_if_exited()
            m = self.metrics()
            settled = (m and metric_total(m, "imageclone_leader") == 1
                       and metric_total(m, "imageclone_informer_synced") > 0
                       and metric_total(m, "imageclone_informer_objects") >= objects
                       and metric_total(m, "imageclone_workqueue_depth") == 0
                       and metric_total(m, "imageclone_workqueue_in_flight") == 0)
            if not settled:
                quiet_since = None
                return None
            quiet_since = quiet_since or time.monotonic()
            # Empty for a second, not just between two adds.
            return quiet_since - self.started if time.monotonic() - quiet_since >= 1.0 else None

        return wait_for(quiet_for_a_second, f"the controller to settle on {objects} workloads", timeout, interval=0.2,
                        explain=self._log_end)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"msg": line, "level": "raw"})
        return lines
