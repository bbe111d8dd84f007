"""A stalled API server or registry, seen by one client alone through a partitionable proxy.

The proxy (``lab.tcpproxy``) drops every byte while partitioned, so a request
sent during the partition never reaches the server later: what the API
server's audit log records is exactly what got through, and who sent it (each
controller replica names itself in its User-Agent).
"""
from __future__ import annotations

import signal
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from builders import BUSYBOX, manifest, pod_spec
from faults_support import AccessLog, ProcessWatch, big_image, simple_deployment, wait_for_skopeo_copy
from test_controller_harness import record, rewritten_to
from test_playbook_lab import run_playbook, variables

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError, api_from_options
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess, backup_repository
from lab.processes import wait_gone
from lab.tcpproxy import PartitionableProxy
from lab.waiting import wait_for

DEPLOYMENT = KINDS["Deployment"]
RENEW_DEADLINE, LEASE_DURATION, RETRY_PERIOD = 10.0, 15.0, 2.0


@pytest.fixture
def api_proxy(lab):
    """A proxy in front of the lab's API server."""
    with PartitionableProxy(("127.0.0.1", lab.config.ports["kube-apiserver"])) as proxy:
        yield proxy


def kubeconfig_through(lab, proxy: PartitionableProxy, path: Path) -> Path:
    """The admin kubeconfig, pointed at ``proxy`` (the API server's certificate names 127.0.0.1)."""
    config = yaml.safe_load(lab.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://{proxy.address}"
    path.write_text(yaml.safe_dump(config))
    return path


def identity_of(controller: ControllerProcess) -> str:
    return wait_for(lambda: next((line["identity"] for line in controller.log_lines()
                                  if line.get("msg") == "image-clone controller starting"), None),
                    "the controller's start-up line")


def timestamp(event: dict, field: str) -> float:
    return datetime.fromisoformat(event[field].replace("Z", "+00:00")).timestamp()


# -- the engine, the modules and the playbook ------------------------------------------------------------

def test_a_stalled_api_server_fails_an_engine_call_within_its_timeouts_naming_the_server(lab, api_proxy, tmp_path):
    kubeconfig = kubeconfig_through(lab, api_proxy, tmp_path / "kubeconfig")
    api = api_from_options({"kubeconfig": str(kubeconfig), "api_connect_timeout": 1, "api_read_timeout": 2})
    assert api.list(DEPLOYMENT, "default")[1], "the proxy forwards while healthy"
    api_proxy.partition()
    started = time.monotonic()
    with pytest.raises(KubeApiError) as stalled:
        api.list(DEPLOYMENT, "default")
    waited = time.monotonic() - started
    assert stalled.value.reason == "Timeout", stalled.value
    assert f"https://{api_proxy.address}" in str(stalled.value) and "within 2s" in str(stalled.value)
    assert waited < 2 * 2 + 1 + 2, f"a GET is tried twice at most: waited {waited:.1f}s"


def test_a_stalled_api_server_fails_the_playbook_with_an_error_naming_it(lab, namespace, api_proxy, tmp_path):
    kubeconfig = kubeconfig_through(lab, api_proxy, tmp_path / "kubeconfig")
    api_proxy.partition()
    started = time.monotonic()
    result = run_playbook(lab, "migrate", variables(
        lab, [namespace], f"stall/{uuid.uuid4().hex[:8]}", imageclone_kubeconfig=str(kubeconfig),
        imageclone_api_connect_timeout=1, imageclone_api_read_timeout=2), check=False)
    waited = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"the API server https://{api_proxy.address} did not answer within 2s" in output, output[-3000:]
    assert waited < 60, f"the playbook took {waited:.0f}s to give up"


# -- leader election --------------------------------------------------------------------------------------

def test_a_partitioned_leader_stops_writing_before_a_standby_takes_over(lab, namespace, api_proxy, tmp_path):
    admin = lab.admin_api()
    repository = backup_repository(lab)
    lease_id = f"stall-{uuid.uuid4().hex[:6]}"

    def candidate(name, kubeconfig=None):
        return ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                                 lease_id=lease_id, repository=repository, name=name, kubeconfig=kubeconfig)

    partitioned = candidate("partitioned", kubeconfig_through(lab, api_proxy, tmp_path / "kubeconfig")).start()
    partitioned.wait_leader_ready()
    standby = candidate("standby").start()
    try:
        wait_for(lambda: standby.ready() and not standby.leader(), "a ready standby")
        admin.create(DEPLOYMENT, namespace, manifest("Deployment", "before", pod_spec(lab, "Deployment")))
        wait_for(lambda: rewritten_to(repository, "Deployment", admin.get(DEPLOYMENT, namespace, "before")),
                 "the first leader's rewrite")
        # Work in flight at the partition: a workload the leader is asked to rewrite as it is cut off.
        admin.create(DEPLOYMENT, namespace, manifest("Deployment", "during", pod_spec(lab, "Deployment")))
        api_proxy.partition()
        cut_at = time.monotonic()
        wait_for(lambda: partitioned.metric("imageclone_leader") == 0, "the partitioned leader to step down",
                 timeout=RENEW_DEADLINE + 5)
        stepped_down = time.monotonic() - cut_at
        wait_for(standby.leader, "the standby to take the lease", timeout=LEASE_DURATION + 4 * RETRY_PERIOD + 10)
        taken_over = time.monotonic() - cut_at
        assert stepped_down <= RENEW_DEADLINE + 1.5 < taken_over, (stepped_down, taken_over)
        assert not partitioned.ready(), "a replica that lost the lease and cannot reach it is not ready"

        admin.create(DEPLOYMENT, namespace, manifest("Deployment", "after", pod_spec(lab, "Deployment")))
        for name in ("during", "after"):
            wait_for(lambda name=name: rewritten_to(repository, "Deployment", admin.get(DEPLOYMENT, namespace, name)),
                     f"the new leader to rewrite {name}")
        api_proxy.heal()
        time.sleep(3 * RETRY_PERIOD)  # the old leader reaches the API server again: it must stay a standby
        assert not partitioned.leader() and standby.leader()
        assert partitioned.running() and standby.running()
    finally:
        partitioned.stop()  # first: once the leader releases the Lease, the other may rightly take it
        standby.stop()

    errors = [line.get("field_error", "") for line in partitioned.log_lines()
              if line.get("msg", "").startswith("lease")]
    assert any(f"https://{api_proxy.address}" in error for error in errors), errors
    # The server's account: every write of the first leader arrived before the first write of the second.
    first, second = identity_of(partitioned), identity_of(standby)
    first_writes, second_writes = lab.audit_events(first), lab.audit_events(second)
    assert first_writes and second_writes
    last_first = max(timestamp(e, "stageTimestamp") for e in first_writes)
    first_second = min(timestamp(e, "requestReceivedTimestamp") for e in second_writes)
    late = [(e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("name"), e["stageTimestamp"],
             e["responseStatus"].get("code")) for e in first_writes
            if timestamp(e, "stageTimestamp") >= first_second]
    assert last_first < first_second, f"both replicas wrote during the same period: {late}"
    record("leader partitioned from the API server (s)", {"stepped down after": round(stepped_down, 2),
                                                           "standby took over after": round(taken_over, 2),
                                                           "gap between their writes": round(first_second
                                                                                             - last_first, 2)})


def test_without_rbac_readiness_fails_and_the_error_is_logged_once(lab, namespace, tmp_path):
    controller = ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                                   kubeconfig=lab.limited_kubeconfig, name="no-rbac").start()
    try:
        status, body = wait_for(lambda: (reply := controller.get("/readyz"))[0] == 503 and reply,
                                "readiness to fail")
        assert "Forbidden" in body and "lease" in body
        time.sleep(5 * RETRY_PERIOD)
        assert controller.get("/healthz")[0] == 200, "a restart cannot fix RBAC: liveness stays good"
        failures = [line for line in controller.log_lines() if line.get("msg", "").startswith("lease update failed")]
        assert len(failures) == 1, [line.get("msg") for line in failures]
        assert "needs get, create and update on leases" in failures[0]["field_error"]
    finally:
        controller.stop()


# -- shutdown -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("copier", ["native", "skopeo"])
def test_shutdown_kills_a_hung_copy_within_the_grace_period(lab, namespace, tmp_path, copier):
    big = big_image(lab, "stall/big")
    source_port = int(lab.config.source_registry.rsplit(":", 1)[1])
    # A registry this slow (50 MB at 100 KB/s) keeps the copy running far longer than any grace period.
    with PartitionableProxy(("127.0.0.1", source_port), downstream_rate=100_000) as slow_registry:
        image = big.replace(lab.config.source_registry, slow_registry.address)
        lab.admin_api().create(DEPLOYMENT, namespace, simple_deployment("slow", {"main": image}))
        controller = ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                                       name=f"hung-copy-{copier}", args=[f"--copier={copier}"])
        log = AccessLog(lab)
        with ProcessWatch(lambda: [controller.pid], []) as watch:
            controller.start()
            if copier == "skopeo":
                copies = [wait_for_skopeo_copy(watch, "stall/big").pid]
            else:  # the native copier streams in the controller's process: a blob upload is under way
                copies = []
                repository = controller.repository.split("/", 1)[1]
                wait_for(lambda: log.count(repository, "POST", "/blobs/uploads/") >= 1, "a blob upload to start",
                         timeout=60, interval=0.05)
            time.sleep(1)
            assert controller.running()
            signalled = time.monotonic()
            controller.send(signal.SIGTERM)
            code = controller.process.wait(30)
            stopped = time.monotonic() - signalled
        assert all(wait_gone(pid, 2) for pid in copies), "skopeo outlived the controller"
    assert code == 0 and stopped < 10, f"exit {code} after {stopped:.1f}s"
    assert any(line.get("msg") == "work stopped" and line.get("copiesCancelled") == 1
               for line in controller.log_lines())
    record(f"shutdown with a hung copy, {copier} copier (s)", round(stopped, 2))


def test_a_second_signal_exits_at_once(lab, namespace, api_proxy, tmp_path):
    repository = backup_repository(lab)
    controller = ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                                   repository=repository, kubeconfig=kubeconfig_through(lab, api_proxy,
                                                                                        tmp_path / "kubeconfig"),
                                   args=["--logLevel=debug"], name="impatient").start()
    controller.wait_leader_ready()
    admin = lab.admin_api()
    admin.create(DEPLOYMENT, namespace, simple_deployment("web", {"main": lab.source_image(BUSYBOX)}))
    wait_for(lambda: rewritten_to(repository, "Deployment", admin.get(DEPLOYMENT, namespace, "web")), "rewrite")
    wait_for(lambda: any(line.get("level") == "debug" for line in controller.log_lines()),
             "a debug line with --logLevel=debug")
    api_proxy.partition()  # releasing the lease now waits for the API server's timeouts
    controller.send(signal.SIGTERM)
    time.sleep(0.5)
    assert controller.running(), "the graceful shutdown was expected to wait for the stalled API server"
    signalled = time.monotonic()
    controller.send(signal.SIGTERM)
    code = controller.process.wait(10)
    assert code == 1 and time.monotonic() - signalled < 1.5
    assert any(line.get("msg") == "second signal received, exiting at once" for line in controller.log_lines())
    controller.stop()


# -- dry run ------------------------------------------------------------------------------------------------

def test_dry_run_counts_nothing_as_done(lab, namespace, tmp_path):
    admin = lab.admin_api()
    original = lab.source_image(BUSYBOX)
    admin.create(DEPLOYMENT, namespace, simple_deployment("web", {"main": original}))
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                           args=["--dryRun"], name="dry-run") as controller:
        controller.wait_leader_ready()
        wait_for(lambda: controller.metric("imageclone_reconcile_total", result="would_rewrite") >= 1,
                 "a reconcile that would rewrite")
        assert controller.metric("imageclone_reconcile_total", result="rewritten") == 0
        assert controller.metric("imageclone_image_backups_total", state="would_copy") >= 1
        assert controller.metric("imageclone_image_backups_total", state="copied") == 0
        assert controller.metric("imageclone_kube_writes_total") == 0
        assert controller.metric("imageclone_kube_dry_run_writes_total") >= 1
    images = [c["image"] for c in admin.get(DEPLOYMENT, namespace, "web")["spec"]["template"]["spec"]["containers"]]
    assert images == [original]
