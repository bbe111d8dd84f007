"""API faults under a running controller, in the session's private lab: the watch expires (410 Gone)
while the controller is frozen, and the API server dies between a verified backup and the patch.

(``test_controller_isolated.py::test_workloads_created_around_an_api_server_restart_converge``
already restarts the API server under the controller and creates workloads once it is back.)

Note on forcing 410: compacting etcd alone does not expire a watch, because the API server serves
watches from its watch cache, which keeps its own history (checked while writing these tests: a
watch from a compacted resourceVersion is still answered from the cache). A restarted API server
starts a fresh cache at etcd's current revision and answers an older resourceVersion with
``ERROR 410 Expired``; compacting etcd as well makes sure nothing can serve the old revision.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from builders import NGINX, POSTGRES, REDIS, manifest, pod_spec
from faults_support import (
    Timer,
    backup_problems,
    etcd_compact,
    isolated_lab,
    new_namespace,
    simple_deployment,
    workload_images,
)

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.waiting import wait_for

DEPLOYMENT = KINDS["Deployment"]


@pytest.fixture
def iso(request, tmp_path_factory):
    lab = isolated_lab(request, tmp_path_factory)
    yield lab
    lab.up()


def all_on(prefix: str, images: dict[str, list[str]]) -> bool:
    return bool(images) and all(image.startswith(prefix + ":") for group in images.values() for image in group)


def test_a_watch_expired_while_the_controller_was_frozen_misses_no_workload(iso, tmp_path):
    """Freeze the controller (SIGSTOP), kill and restart the API server under it, compact etcd, then
    create, change and delete workloads; thaw it: its watches resume from a resourceVersion that no
    longer exists, get 410, relist, and every change is handled: new workloads rewritten, the changed
    one rewritten again, the deleted one forgotten."""
    timer = Timer()
    namespace = new_namespace(iso, "expired")
    admin = iso.admin_api()
    for name in ("kept", "changed", "deleted"):
        admin.create(DEPLOYMENT, namespace, simple_deployment(name, {"main": iso.source_image(NGINX)}))
    with ControllerProcess(iso, tmp_path, namespaces=[namespace], lease_namespace=namespace) as controller:
        prefix = controller.repository
        controller.wait_leader_ready()
        wait_for(lambda: all_on(prefix, workload_images(admin, namespace)), "the first three rewritten")
        timer.mark("three workloads rewritten")

        os.kill(controller.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            iso.daemons.stop("kube-apiserver", sig=signal.SIGKILL)  # its watch connections die with it
            etcd_compact(iso)
            iso.up()
            admin = iso.admin_api()
            for name in ("new-a", "new-b"):
                admin.create(DEPLOYMENT, namespace, simple_deployment(name, {"main": iso.source_image(REDIS)}))
            admin.create(KINDS["StatefulSet"], namespace,
                         manifest("StatefulSet", "new-db", pod_spec(iso, "StatefulSet")))
            admin.create(KINDS["CronJob"], namespace, manifest("CronJob", "new-job", pod_spec(iso, "CronJob")))
            admin.patch(DEPLOYMENT, namespace, "changed", {"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": iso.source_image(POSTGRES)}]}}}})
            admin.delete(DEPLOYMENT, namespace, "deleted")
            revision = etcd_compact(iso)  # the revision the controller last saw is gone from etcd too
        finally:
            os.kill(controller.pid, signal.SIGCONT)
        frozen = time.monotonic() - frozen_at
        timer.mark(f"thawed after {frozen:.1f}s (etcd compacted at {revision})")

        wait_for(lambda: all_on(prefix, workload_images(admin, namespace, ("Deployment", "StatefulSet", "CronJob"))),
                 "every workload created while the watch was expired rewritten", timeout=60)
        changed = wait_for(lambda: (images := workload_images(admin, namespace)["Deployment/changed"])
                           and "postgres" in images[0] and images[0].startswith(prefix) and images,
                           "the changed workload rewritten to its new image", timeout=30)
        wait_for(lambda: controller.metric("imageclone_informer_objects") == 6, "the deleted workload forgotten")
        timer.mark("converged")
        assert "reconcile crashed" not in controller.log_text()
        terms = controller.metric("imageclone_leader_transitions_total")
        expired = controller.metric("imageclone_watch_restarts_total", cause="expired")
        messages = [line.get("msg") for line in controller.log_lines()]
    images = workload_images(admin, namespace, ("Deployment", "StatefulSet", "CronJob"))
    assert backup_problems(iso, [i for group in images.values() for i in group], prefix) == []
    assert changed[0].endswith("@" + iso.config.seeds[POSTGRES])
    if terms > 1:
        # The freeze outlasted the 10 s renew deadline (a very loaded machine): the controller stopped,
        # campaigned and started a new term from a fresh LIST. Nothing was missed, but 410 was not the path.
        pytest.skip(f"frozen {frozen:.1f}s: the lease expired and a new term relisted; the 410 path was not taken")
    assert expired >= 1, "the watches never saw 410: the test did not force what it claims"
    assert "watch expired, relisting" in messages


def gated_skopeo(directory: Path) -> Path:
    """A ``skopeo`` that announces itself and waits for a 'go' file before running the real one
    (the engine passes skopeo only PATH, HOME and TMPDIR, so the gate is written into the script)."""
    directory.mkdir()
    script = directory / "skopeo"
    script.write_text(f"#!/bin/sh\ntouch {directory}/started\nwhile [ ! -e {directory}/go ]; do sleep 0.02; done\n"
                      f"exec /usr/bin/skopeo \"$@\"\n")
    script.chmod(0o755)
    return directory


def test_the_api_server_dying_between_backup_and_patch_is_retried_and_converges(iso, tmp_path):
    timer = Timer()
    namespace = new_namespace(iso, "patch-outage")
    gate = gated_skopeo(tmp_path / "gate")
    admin = iso.admin_api()
    env = {"PATH": f"{gate}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    image = iso.source_image("acme/vanishing:1.0")
    with ControllerProcess(iso, tmp_path, namespaces=[namespace], lease_namespace=namespace, env=env,
                           args=["--copier=skopeo"]) as controller:  # the gated skopeo holds the copy
        controller.wait_leader_ready()
        admin.create(DEPLOYMENT, namespace, simple_deployment("app", {"main": image}))
        wait_for(lambda: (gate / "started").exists(), "the copy to start")
        iso.daemons.stop("kube-apiserver", sig=signal.SIGKILL)
        (gate / "go").touch()  # the copy completes and is verified; the patch finds no API server
        wait_for(lambda: controller.metric("imageclone_reconcile_failures_total", reason="api_error") >= 1,
                 "the patch to fail", timeout=30)
        timer.mark("the patch failed with the API server down")
        iso.up()
        admin = iso.admin_api()
        wait_for(lambda: all_on(controller.repository, workload_images(admin, namespace)),
                 "the retried patch", timeout=60)
        timer.mark("converged")
        retried = [line for line in controller.log_lines()
                   if line.get("msg") == "reconcile failed, retrying with backoff"]
        assert retried and retried[0]["reason"] == "api_error"
        assert controller.metric("imageclone_image_backups_total", state="copied") == 1  # not copied twice
    images = workload_images(admin, namespace)
    assert backup_problems(iso, images["Deployment/app"], controller.repository) == []
