"""Process faults: skopeo or the controller SIGKILLed in the middle of a copy, and another writer
editing a workload while image-clone patches it.

All on the shared lab: these tests kill only processes they started (skopeo children of this
test process or of a controller it started) and back up into repositories of their own.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from builders import BUSYBOX, NAMESPACES, NGINX, REDIS
from faults_support import (
    AccessLog,
    AuthDirWatch,
    ProcessWatch,
    Timer,
    auth_file_problems,
    backup_problems,
    big_image,
    blob_digests,
    engine_migration,
    leaked,
    new_namespace,
    registry_client,
    reports_by_name,
    secret_forms,
    simple_deployment,
    wait_for_skopeo_copy,
    workload_images,
)

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy, backup_reference
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.processes import kill, wait_gone
from lab.waiting import wait_for

DEPLOYMENT = KINDS["Deployment"]


def catch_half_done(log: AccessLog, repository_path: str, blobs: list[str], tag: str, timeout: float = 30.0) -> int:
    """Wait until a first blob of one image landed in ``repository_path`` while its manifest did not."""
    def first_blob_landed() -> int:
        landed = log.blobs_written(repository_path, blobs)
        assert log.manifests_written(repository_path, tag) == 0, "the copy finished before it could be interrupted"
        return landed

    return wait_for(first_blob_landed, "a first blob of the copy to land", timeout, interval=0.003)


@pytest.fixture
def private_home(tmp_path, monkeypatch):
    """A HOME without skopeo's blob-info cache: copies really upload (no cross-repository mounts)
    and take long enough to be interrupted; TMPDIR where the engine's auth files can be watched."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return home, tmp


def test_skopeo_killed_mid_copy_blocks_the_workload_and_a_rerun_resumes_and_converges(lab, namespace, private_home):
    """SIGKILL the skopeo child while a ~50 MB image streams into the backup (one layer landed,
    no manifest yet): the workload keeps its source image, nothing half-copied is referenced,
    the other workload still converges; a second pass uploads only the missing blobs."""
    timer = Timer()
    _home, tmp = private_home
    big = big_image(lab)
    timer.mark("big image in the source registry")
    admin = lab.admin_api()
    admin.create(DEPLOYMENT, namespace, simple_deployment("big", {"main": big, "side": lab.source_image(BUSYBOX)}))
    admin.create(DEPLOYMENT, namespace, simple_deployment("small", {"main": lab.source_image(NGINX)}))
    repository = f"faults/skopeo-kill/{uuid.uuid4().hex[:10]}"
    prefix = f"{lab.config.backup_registry}/{repository}"
    log = AccessLog(lab)
    password = lab.backup_password()

    policy = NamingPolicy("flat", prefix)
    big_backup = backup_reference(parse_reference(big), policy)
    blobs = blob_digests(lab, big)

    with ProcessWatch(lambda: [os.getpid()], secret_forms(password)) as watch, AuthDirWatch(tmp) as authdirs, \
            ThreadPoolExecutor(1) as pool:
        running = pool.submit(engine_migration(lab, repository, [namespace], copier="skopeo").run)
        copy = wait_for_skopeo_copy(watch, "faults/big")
        landed = catch_half_done(log, repository, blobs, big_backup.tag)
        kill(copy.pid)
        timer.mark(f"skopeo {copy.pid} killed after {landed} of {len(blobs)} blobs landed")
        report = running.result(timeout=120)
    reports = reports_by_name(report)

    # The interrupted image is not backed up, so its workload is left exactly as it was.
    big_outcome = report.images[big]
    assert big_outcome.state == "failed" and big in big_outcome.reason, big_outcome
    assert reports["Deployment/big"].state == "blocked" and big in reports["Deployment/big"].reason
    assert reports["Deployment/small"].state == "rewritten"
    stored = admin.get(DEPLOYMENT, namespace, "big")
    assert [c["image"] for c in stored["spec"]["template"]["spec"]["containers"]] == [big, lab.source_image(BUSYBOX)]
    assert ORIGINAL_IMAGES not in (stored["metadata"].get("annotations") or {})
    images = workload_images(admin, namespace)
    assert backup_problems(lab, [i for group in images.values() for i in group], prefix) == []
    # No manifest of the half-copied image exists in the backup.
    assert registry_client(lab).head_manifest(big_backup) is None
    # Credentials: never on a command line; the auth file was private and is gone.
    assert watch.copies() and not watch.offenders, watch.offenders
    assert auth_file_problems(watch, authdirs) == []

    # Re-run: converges, and the blobs that landed before the kill are not uploaded again.
    before = log.blobs_written(repository, blobs)
    again = engine_migration(lab, repository, [namespace], copier="skopeo").run()
    timer.mark("second pass done")
    assert reports_by_name(again)["Deployment/big"].state == "rewritten"
    assert again.images[big].state == "copied"
    uploaded_again = log.blobs_written(repository, blobs) - before
    assert uploaded_again <= len(blobs) - landed, (uploaded_again, len(blobs), landed)
    images = workload_images(admin, namespace)
    assert all(image.startswith(prefix + ":") for group in images.values() for image in group), images
    assert backup_problems(lab, [i for group in images.values() for i in group], prefix) == []


# -- the controller SIGKILLed mid-copy ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["native", "skopeo"])
def killed_controller(lab, tmp_path_factory, request):
    """One scenario, two verdicts, for each copier: a controller (and, as a container runtime would,
    its skopeo child) SIGKILLed while a ~50 MB image streams into the backup; then a new controller.

    Returns what was observed right after the kill, after the new controller converged, and
    what the killed one left in its TMPDIR.
    """
    timer = Timer()
    root = tmp_path_factory.mktemp("killed-controller")
    home, tmp = root / "home", root / "tmp"
    home.mkdir()
    tmp.mkdir(mode=0o700)
    env = {"HOME": str(home), "TMPDIR": str(tmp)}
    namespace = new_namespace(lab, "faults-ctrl-kill")
    admin = lab.admin_api()
    big = big_image(lab)
    admin.create(DEPLOYMENT, namespace, simple_deployment("big", {"main": big, "side": lab.source_image(BUSYBOX)}))
    password = lab.backup_password()
    log = AccessLog(lab)
    observed: dict = {"namespace": namespace, "big": big, "timer": timer}

    copier = request.param
    first = ControllerProcess(lab, root, namespaces=[namespace], lease_namespace=namespace, env=env,
                              lease_id="faults-first", args=[f"--copier={copier}"])
    prefix = first.repository
    repository = prefix.split("/", 1)[1]
    big_backup = backup_reference(parse_reference(big), NamingPolicy("flat", prefix))
    blobs = blob_digests(lab, big)
    with ProcessWatch(lambda: [first.pid], secret_forms(password)) as watch, AuthDirWatch(tmp) as authdirs:
        first.start()
        # The native copier streams in the controller's own process: killing it kills the copy.
        copies = [wait_for_skopeo_copy(watch, "faults/big").pid] if copier == "skopeo" else []
        observed["landed"] = catch_half_done(log, repository, blobs, big_backup.tag)
        for pid in (first.pid, *copies):  # the container dies with everything in it
            kill(pid)
        first.stop()
        assert all(wait_gone(pid) for pid in copies)
        timer.mark(f"controller {first.pid} ({copier}) SIGKILLed after {observed['landed']} blob(s)")
        observed["after_kill"] = admin.get(DEPLOYMENT, namespace, "big")
        observed["backup_after_kill"] = registry_client(lab).head_manifest(big_backup)
        observed["left_after_kill"] = authdirs.leftovers()

        second = ControllerProcess(lab, root, namespaces=[namespace], lease_namespace=namespace, env=env,
                                   repository=prefix, lease_id="faults-second", name="restarted",
                                   args=[f"--copier={copier}"])
        with ProcessWatch(lambda: [second.pid], secret_forms(password)) as second_watch, second:
            observed["converged"] = wait_for(
                lambda: (obj := admin.get(DEPLOYMENT, namespace, "big"))
                and all(c["image"].startswith(prefix + ":") for c in obj["spec"]["template"]["spec"]["containers"])
                and obj, "the restarted controller to rewrite the workload", timeout=60)
            timer.mark("the restarted controller converged")
        observed["offenders"] = watch.offenders + second_watch.offenders
        observed["copies_seen"] = len(watch.copies()) + len(second_watch.copies())
        observed["modes"] = authdirs.modes
        observed["left_at_end"] = authdirs.leftovers()
        observed["tmp"] = tmp
    observed["prefix"] = prefix
    observed["copier"] = copier
    observed["logs"] = first.log_text() + second.log_text()
    yield observed
    admin.delete(NAMESPACES, None, namespace)


def test_controller_killed_mid_copy_never_references_a_partial_image_and_a_restart_converges(lab, killed_controller):
    seen = killed_controller
    before = seen["after_kill"]
    assert [c["image"] for c in before["spec"]["template"]["spec"]["containers"]] == [
        seen["big"], lab.source_image(BUSYBOX)], "rewritten although the copy was interrupted"
    assert ORIGINAL_IMAGES not in (before["metadata"].get("annotations") or {})
    assert seen["backup_after_kill"] is None, "a manifest of the interrupted copy exists"
    images = [c["image"] for c in seen["converged"]["spec"]["template"]["spec"]["containers"]]
    assert backup_problems(lab, images, seen["prefix"]) == []
    assert seen["offenders"] == []
    assert seen["copier"] == "native" or seen["copies_seen"] >= 2
    assert seen["modes"] <= {("dir", "0o700"), ("file", "0o600")}, seen["modes"]
    assert not leaked(seen["logs"], secret_forms(lab.backup_password()))


def test_a_controller_killed_mid_copy_leaves_no_credentials_on_disk(lab, killed_controller):
    seen = killed_controller
    password = lab.backup_password()
    left = [path for path in seen["tmp"].rglob("*") if path.is_file()
            and leaked(path.read_text(errors="replace"), secret_forms(password))]
    assert left == [], f"credentials left on disk after the kill and a restart: {left}"
    assert seen["left_at_end"] == []


def test_a_killed_skopeo_is_reported_as_killed(tmp_path):
    from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
    from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import CopyError, Skopeo

    fake = tmp_path / "skopeo"
    fake.write_text("#!/bin/sh\nkill -9 $$\n")
    fake.chmod(0o755)
    with pytest.raises(CopyError) as failed:
        Skopeo(binary=str(fake)).copy(parse_reference("registry.example/app:1"),
                                      parse_reference("backup.example/images:app"), CredentialStore())
    assert not failed.value.missing
    assert "SIGKILL" in str(failed.value) or "killed" in str(failed.value), str(failed.value)


# -- another writer between read and patch ------------------------------------------------------------------------


def test_a_concurrent_writer_forces_conflicts_that_are_retried_and_its_fields_survive(lab, namespace, tmp_path):
    """A second client patches an annotation and a label of the workload as fast as it can while the
    controller rewrites it: the controller's conditional patches meet 409s, re-read and retry; the
    other writer's fields (its last value) are intact and the rewrite lands."""
    admin = lab.admin_api()
    other = lab.admin_api(field_manager="other-writer")
    body = simple_deployment("busy", {"main": lab.source_image(NGINX), "side": lab.source_image(REDIS)})
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "prod"}]
    admin.create(DEPLOYMENT, namespace, body)
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            try:
                other.patch(DEPLOYMENT, namespace, "busy", {"metadata": {
                    "labels": {"writer": "other"}, "annotations": {"other-writer/counter": str(number)}}})
            except KubeApiError:
                continue
            written.append(number)

    # One writer flat out: every patch image-clone computes during a backup (hundreds of ms) is
    # stale by the time it is sent. (Two such writers starve it into its 1-2-4 s retry backoff.)
    writers = [threading.Thread(target=write, daemon=True)]
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace) as controller:
        for writer in writers:
            writer.start()
        wait_for(lambda: len(written) > 20, "the other writer to get going")
        controller.wait_leader_ready()
        wait_for(lambda: all(image.startswith(controller.repository + ":")
                             for image in workload_images(admin, namespace)["Deployment/busy"]),
                 "the rewrite to land despite the other writer", timeout=60)
        time.sleep(0.3)
        stop.set()
        for writer in writers:
            writer.join(10)
        writes = controller.metric("imageclone_kube_writes_total")
        retries = controller.metric("imageclone_reconcile_retries_total")
    stored = admin.get(DEPLOYMENT, namespace, "busy")
    counters = stored["metadata"]["annotations"]["other-writer/counter"]
    assert int(counters) == max(written), (counters, max(written))
    assert stored["metadata"]["labels"]["writer"] == "other"
    main = stored["spec"]["template"]["spec"]["containers"][0]
    assert main["env"] == [{"name": "MODE", "value": "prod"}]
    assert json.loads(stored["metadata"]["annotations"][ORIGINAL_IMAGES])["containers"] == {
        "main": lab.source_image(NGINX), "side": lab.source_image(REDIS)}
    print(f"other writer: {len(written)} patches; controller: {writes:.0f} writes, {retries:.0f} reconcile retries")
    assert writes >= 2, "no conflict happened: the test proved nothing"
