"""Tests that need a cluster of their own: a private lab (own etcd, API server, registries) in a temp dir.

Here the controller runs cluster-wide (no ``--namespace``), the API server is restarted under it,
deploy/ is applied as a whole, and 10,000 workloads are reconciled. None of that may happen in the
shared lab, where other tests' workloads live.
"""
from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from builders import NGINX, manifest, pod_spec
from faults_support import new_namespace
from test_controller_harness import REPO, managers, record, rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.kube import Resource
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.processes import resident_memory
from lab.waiting import wait_for
from lab.workloads import container_images

POD = Resource("Pod", "v1", "pods")


@pytest.fixture(scope="module")
def iso(tmp_path_factory):
    from lab.lab import Lab

    lab = Lab(tmp_path_factory.mktemp("isolated") / "lab", with_node=False)
    started = time.monotonic()
    lab.up()
    record("isolated lab up (s)", round(time.monotonic() - started, 1))
    yield lab
    lab.down()


def test_cluster_wide_the_ignored_namespaces_and_kube_system_are_never_touched(iso, tmp_path):
    admin = iso.admin_api()
    deployment = KINDS["Deployment"]
    watched, ignored = new_namespace(iso, "watched"), new_namespace(iso, "ignored")
    for where in (watched, ignored, "kube-system"):
        admin.create(deployment, where, manifest("Deployment", "app", pod_spec(iso, "Deployment")))
    with ControllerProcess(iso, tmp_path, namespaces=None, lease_namespace=watched,
                           args=[f"--ignoreNamespace={ignored}", "--resync=1s"]) as process:
        process.wait_leader_ready()
        wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(deployment, watched, "app")),
                 "the watched namespace rewritten")
        # One stored write rewrote it; resyncs every second then store nothing more (a resync that races
        # the watch event of our own write may cost a refused 409, which changes nothing).
        wait_for(lambda: len(process.stored_writes()) == 1, "one stored write")
        time.sleep(3)
        assert len(process.stored_writes()) == 1
        # The API server filters the other two out: they are not even cached.
        assert process.metric("imageclone_informer_objects", informer="Deployment") == 1
    for where in (ignored, "kube-system"):
        untouched = admin.get(deployment, where, "app")
        assert container_images("Deployment", untouched)["main"] == iso.source_image(NGINX)
        assert ORIGINAL_IMAGES not in (untouched["metadata"].get("annotations") or {})
        assert "image-clone" not in managers(untouched)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_workloads_created_around_an_api_server_restart_converge(iso, tmp_path, how):
    """SIGTERM: a graceful stop, long enough that the leader loses its lease and campaigns again.
    SIGKILL: a short outage, within the renew deadline: the informers reconnect and resume."""
    admin = iso.admin_api()
    deployment, statefulset = KINDS["Deployment"], KINDS["StatefulSet"]
    namespace = new_namespace(iso, "restart")
    with ControllerProcess(iso, tmp_path, namespaces=None, lease_namespace=namespace) as process:
        process.wait_leader_ready()
        admin.create(deployment, namespace, manifest("Deployment", "before", pod_spec(iso, "Deployment")))
        wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(deployment, namespace, "before")),
                 "rewrite before the restart")

        stopped_at = time.monotonic()
        iso.daemons.stop("kube-apiserver", sig=getattr(signal, how))
        time.sleep(1)
        iso.up()  # starts the API server again and waits until it is ready
        outage = time.monotonic() - stopped_at
        back_at = time.monotonic()
        admin = iso.admin_api()
        admin.create(deployment, namespace, manifest("Deployment", "after", pod_spec(iso, "Deployment")))
        admin.create(statefulset, namespace, manifest("StatefulSet", "after", pod_spec(iso, "StatefulSet")))
        wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(deployment, namespace, "after"))
                 and rewritten_to(process.repository, "StatefulSet", admin.get(statefulset, namespace, "after")),
                 "workloads created after the restart rewritten", timeout=90)
        converged = time.monotonic() - back_at
        assert process.running()
        record(f"API server restart ({how}): outage and convergence after it is back (s)",
               {"outage": round(outage, 1), "converged after return": round(converged, 1)})
        messages = {line.get("msg") for line in process.log_lines()}
        if outage > 10 + 2 * 2.4:  # longer than the renew deadline plus a retry: the lease was lost
            assert "leader lease lost: could not renew it within the renew deadline" in messages
            assert "stopped all work after losing the lease; campaigning again" in messages
        else:
            assert "list/watch failed, retrying" in messages
        assert not [m for m in messages if m.startswith("Retrying")], "urllib3's retry chatter is filtered"
        process.wait_leader_ready()


def test_deploy_manifests_apply_in_one_command_and_pass_the_restricted_pod_security_level(iso):
    applied = iso.kubectl("apply", "-k", str(REPO / "deploy"))
    assert applied.returncode == 0, applied.stderr
    again = iso.kubectl("apply", "-k", str(REPO / "deploy"))
    assert again.returncode == 0 and "created" not in again.stdout
    admin = iso.admin_api()
    stored = admin.get(KINDS["Deployment"], "image-clone", "image-clone-controller")
    assert stored["spec"]["replicas"] == 2
    args = stored["spec"]["template"]["spec"]["containers"][0]["args"]
    assert any(arg.startswith("--backupRegistry=") for arg in args)
    # The ReplicaSet controller could create the pods: the namespace enforces "restricted" Pod Security.
    pods = wait_for(lambda: admin.list(POD, "image-clone")[0], "controller pods created", timeout=60)
    assert len(pods) >= 1


def test_ten_thousand_workloads_fit_in_150_mb(iso, tmp_path):
    count = 10_000
    namespace = new_namespace(iso, "scale")
    admin = iso.admin_api()
    cronjob = KINDS["CronJob"]
    spec = {"containers": [{"name": "main", "image": iso.source_image(NGINX)}], "restartPolicy": "Never"}

    def create(number: int) -> None:
        admin.create(cronjob, namespace, manifest("CronJob", f"job-{number:05d}", spec))

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    created = time.monotonic() - started
    with ControllerProcess(iso, tmp_path, namespaces=None, lease_namespace=namespace,
                           args=["--workers=8"]) as process:
        started = time.monotonic()
        process.wait_leader_ready(timeout=120)
        wait_for(lambda: process.metric("imageclone_reconcile_total", kind="CronJob", result="rewritten") >= count,
                 "every workload rewritten", timeout=600)
        converged = time.monotonic() - started
        time.sleep(2)
        memory = resident_memory(process.pid)
        assert process.metric("imageclone_informer_objects", informer="CronJob") == count
    current, peak = memory["VmRSS"] / 2**20, memory["VmHWM"] / 2**20
    record("10,000 CronJobs", {"created in (s)": round(created, 1), "all rewritten in (s)": round(converged, 1),
                               "controller RSS now (MiB)": round(current, 1),
                               "controller peak RSS (MiB)": round(peak, 1)})
    assert peak <= 150, f"peak RSS {peak:.0f} MiB"
