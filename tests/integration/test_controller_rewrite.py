"""The controller on the shared lab, scoped to the test's namespaces: new workloads are backed up and
rewritten within seconds, converged ones cost nothing, ignored namespaces and kube-system are left alone."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from builders import BUSYBOX, NGINX, REDIS, manifest, pod_spec
from test_controller_harness import events_for, managers, record, rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.kinds import DEFAULT_WATCHED
from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.waiting import wait_for
from lab.workloads import container_images, pod_spec_of

WATCHED_KINDS = DEFAULT_WATCHED


@pytest.fixture
def controller(lab, namespace, tmp_path):
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace) as process:
        process.wait_leader_ready()
        yield process


def test_new_workloads_of_every_watched_kind_are_rewritten_within_seconds(lab, namespace, controller):
    admin = lab.admin_api()
    timings = {}
    for kind in WATCHED_KINDS:
        name = kind.lower()
        started = time.monotonic()
        admin.create(KINDS[kind], namespace, manifest(kind, name, pod_spec(lab, kind)))
        stored = wait_for(lambda kind=kind, name=name: (obj := admin.get(KINDS[kind], namespace, name))
                          and rewritten_to(controller.repository, kind, obj) and obj,
                          f"{kind} rewritten", timeout=30)
        timings[kind] = round(time.monotonic() - started, 3)

        images = container_images(kind, stored)
        assert images["main"].endswith("@" + lab.config.seeds[NGINX])
        assert images["side"].endswith("@" + lab.config.seeds[REDIS])
        assert images["init"].endswith("@" + lab.config.seeds["library/busybox:1.36"])
        originals = json.loads(stored["metadata"]["annotations"][ORIGINAL_IMAGES])
        assert originals["containers"]["main"] == lab.source_image(NGINX)
        assert originals["initContainers"]["init"] == lab.source_image(BUSYBOX)
        # Everything else in the pod spec survived the rewrite.
        main = next(c for c in pod_spec_of(kind, stored)["containers"] if c["name"] == "main")
        assert main["env"] == [{"name": "MODE", "value": "prod"}] and main["ports"][0]["containerPort"] == 8080
    record("time to rewrite a new workload (s), first one includes copying 3 images", timings)
    histogram_sum = controller.metric("imageclone_rewrite_latency_seconds_sum")
    record("rewrite latency inside the controller, mean (s)",
           round(histogram_sum / controller.metric("imageclone_rewrite_latency_seconds_count"), 3))
    assert all(seconds < 30 for seconds in timings.values()), timings

    events = wait_for(lambda: [e for e in events_for(lab, namespace, "deployment") if e["reason"] == "Rewritten"],
                      "a Rewritten event")
    assert events[0]["type"] == "Normal" and events[0]["reportingComponent"] == "image-clone"
    assert controller.repository in events[0]["message"]

    # Converged: our own rewrite events and later updates cost no write and no registry request.
    writes = controller.metric("imageclone_kube_writes_total")
    assert writes >= len(WATCHED_KINDS)  # one patch each, plus one per conflict with the controller manager
    # The watch event of each rewrite came back and reconciled to "unchanged" (one HEAD per image, cached).
    wait_for(lambda: controller.metric("imageclone_reconcile_total", result="unchanged") >= len(WATCHED_KINDS),
             "our own rewrites reconciled")
    ours = "/v2/" + controller.repository.split("/", 1)[1] + "/"
    requests = len([r for r in lab.registry_requests("registry-backup") if r.path.startswith(ours)])
    reconciles = controller.metric("imageclone_reconcile_total")
    # A status-only or template-label change is not even queued; an annotation image-clone reads is.
    admin.patch(KINDS["Deployment"], namespace, "deployment", {"spec": {"template": {"metadata": {
        "labels": {"touched": "yes"}}}}})
    admin.patch(KINDS["Deployment"], namespace, "deployment", {"metadata": {"annotations": {
        "imageclone.io/skip": "false"}}})
    wait_for(lambda: controller.metric("imageclone_reconcile_total") == reconciles + 1, "one reconcile")
    time.sleep(1)
    assert controller.metric("imageclone_kube_writes_total") == writes
    assert len([r for r in lab.registry_requests("registry-backup") if r.path.startswith(ours)]) == requests
    assert controller.metric("imageclone_reconcile_total", kind="Deployment", result="unchanged") >= 1
    assert controller.metric("imageclone_image_backups_total", state="copied") == 3


def test_a_changed_image_is_backed_up_and_rewritten_again(lab, namespace, controller):
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    admin.create(deployment, namespace, manifest("Deployment", "app", pod_spec(lab, "Deployment")))
    wait_for(lambda: rewritten_to(controller.repository, "Deployment", admin.get(deployment, namespace, "app")),
             "first rewrite")
    # A user rolls out a new image straight from the source registry.
    admin.patch(deployment, namespace, "app", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": lab.source_image("library/postgres:16")}]}}}})
    stored = wait_for(lambda: (obj := admin.get(deployment, namespace, "app"))
                      and obj["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
                          controller.repository) and "postgres" in obj["spec"]["template"]["spec"][
                          "containers"][0]["image"] and obj, "second rewrite")
    originals = json.loads(stored["metadata"]["annotations"][ORIGINAL_IMAGES])
    assert originals["containers"]["main"] == lab.source_image("library/postgres:16")


def test_ignored_namespaces_and_kube_system_are_never_touched(lab, namespace, tmp_path, kube):
    from kubernetes import client

    core = client.CoreV1Api(kube)
    ignored = f"ctrl-ignored-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ignored)))
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    system_name = f"imageclone-test-{uuid.uuid4().hex[:6]}"
    try:
        for where, name in ((namespace, "app"), (ignored, "app"), ("kube-system", system_name)):
            admin.create(deployment, where, manifest("Deployment", name, pod_spec(lab, "Deployment")))
        # Named explicitly, with a 1s resync: they are still never processed.
        with ControllerProcess(lab, tmp_path, namespaces=[namespace, ignored, "kube-system"],
                               lease_namespace=namespace,
                               args=[f"--ignoreNamespace={ignored}", "--resync=1s"]) as process:
            process.wait_leader_ready()
            wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(deployment, namespace, "app")),
                     "the watched namespace rewritten")
            wait_for(lambda: len(process.stored_writes()) == 1, "one stored write")
            time.sleep(3)  # a few resyncs: nothing more is stored
            assert process.metric("imageclone_informer_objects") == 1  # no informer for the two others
            assert len(process.stored_writes()) == 1
        for where, name in ((ignored, "app"), ("kube-system", system_name)):
            untouched = admin.get(deployment, where, name)
            assert container_images("Deployment", untouched)["main"] == lab.source_image(NGINX)
            assert ORIGINAL_IMAGES not in (untouched["metadata"].get("annotations") or {})
            assert "image-clone" not in managers(untouched)
            assert not events_for(lab, where, name) or all(
                e.get("reportingComponent") != "image-clone" for e in events_for(lab, where, name))
    finally:
        try:
            admin.delete(deployment, "kube-system", system_name)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
        core.delete_namespace(ignored)


def test_a_deleted_workload_is_forgotten(lab, namespace, controller):
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    admin.create(deployment, namespace, manifest("Deployment", "short-lived", pod_spec(lab, "Deployment")))
    wait_for(lambda: rewritten_to(controller.repository, "Deployment",
                                  admin.get(deployment, namespace, "short-lived")), "rewrite")
    admin.delete(deployment, namespace, "short-lived")
    wait_for(lambda: controller.metric("imageclone_informer_objects") == 0, "the cache to drop it")
    with pytest.raises(KubeApiError):
        admin.get(deployment, namespace, "short-lived")
