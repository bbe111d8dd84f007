"""Registry faults: the backup registry dies in the middle of a migration (engine pass, playbook) and
of a controller run, the source registry is down, a source tag is deleted upstream after the backup.

Stopping registries happens in the session's private lab (``faults_support.isolated_lab``), never in
the shared one. The invariant checked after every fault: each workload that was rewritten points only
at backup references whose digest and tag both exist in the backup registry (HEAD after the fault).
"""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from faults_support import (
    SECRET,
    AccessLog,
    AuthDirWatch,
    ProcessWatch,
    Timer,
    auth_file_problems,
    backup_problems,
    engine_migration,
    events,
    isolated_lab,
    leaked,
    new_namespace,
    reports_by_name,
    secret_forms,
    simple_deployment,
    small_images,
    workload_images,
)

from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import DATA_KEY
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.collection import collections_root
from lab.controller_process import ControllerProcess
from lab.lab import BACKUP_USER
from lab.waiting import wait_for

DEPLOYMENT = KINDS["Deployment"]
BIN = Path(sys.executable).parent


@pytest.fixture
def iso(request, tmp_path_factory):
    lab = isolated_lab(request, tmp_path_factory)
    yield lab
    lab.up()  # whatever a test stopped runs again for the next one


def crash(lab, component: str) -> None:
    """SIGKILL a lab component (a crash: no draining of requests in flight)."""
    lab.daemons.stop(component, sig=signal.SIGKILL)


def one_deployment_per_image(lab, namespace: str, images: list[str]) -> dict[str, str]:
    admin = lab.admin_api()
    names = {}
    for number, image in enumerate(images):
        names[f"app-{number:02d}"] = image
        admin.create(DEPLOYMENT, namespace, simple_deployment(f"app-{number:02d}", {"main": image}))
    return names


def all_images(images: dict[str, list[str]]) -> list[str]:
    return [image for group in images.values() for image in group]


# -- backup registry dies mid-migration -----------------------------------------------------------------------


@pytest.mark.parametrize("copier", ["skopeo", "native"])
def test_backup_registry_crash_mid_engine_pass_rewrites_only_verified_images_and_a_rerun_converges(iso, copier):
    timer = Timer()
    namespace = new_namespace(iso, "registry-crash")
    images = small_images(iso, 12, size=8 * 1024 * 1024)
    one_deployment_per_image(iso, namespace, images)
    repository = f"faults/registry-crash/{uuid.uuid4().hex[:10]}"
    prefix = f"{iso.config.backup_registry}/{repository}"
    log = AccessLog(iso)
    timer.mark("12 images of 8 MB and their Deployments")

    # Few retries, so the failed half of the pass ends quickly; the decisions do not depend on them.
    migration = engine_migration(iso, repository, [namespace], retry_times=1, max_retries=1, parallel=2,
                                 per_registry=2, copier=copier)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(migration.run)
        # Two copies landed and were verified (a HEAD answered 200 after the copy), then the crash.
        wait_for(lambda: log.count(repository, "HEAD", "/manifests/") >= 2, "the first copies to be verified",
                 interval=0.005)
        crash(iso, "registry-backup")
        timer.mark(f"backup registry crashed after {log.manifests_written(repository)} manifests")
        report = running.result(timeout=180)
    timer.mark("the pass ended")
    states = {r.key: r.state for r in report.workloads}
    rewritten = [key for key, state in states.items() if state == "rewritten"]
    blocked = [r for r in report.workloads if r.state == "blocked"]
    assert rewritten and blocked, [(r.key, r.state, r.reason) for r in report.workloads]  # really mid-way
    assert all(iso.config.backup_registry in r.reason for r in blocked), [r.reason for r in blocked]

    admin = iso.admin_api()
    during = workload_images(admin, namespace)
    for name, group in during.items():
        on_backup = [image.startswith(prefix) for image in group]
        assert all(on_backup) or not any(on_backup), (name, group)  # all of a workload or nothing
    assert len([g for g in during.values() if g[0].startswith(prefix)]) == len(rewritten)

    iso.up()  # the registry comes back with whatever it had stored
    assert backup_problems(iso, all_images(during), prefix) == []

    again = engine_migration(iso, repository, [namespace], copier=copier).run()
    assert {r.state for r in again.workloads} == {"rewritten", "unchanged"}
    assert {r.key for r in again.workloads if r.state == "unchanged"} == set(rewritten)
    after = workload_images(admin, namespace)
    assert all(image.startswith(prefix + ":") for image in all_images(after))
    assert backup_problems(iso, all_images(after), prefix) == []
    timer.mark("re-run converged")


def test_backup_registry_crash_mid_controller_run_rewrites_only_verified_images_then_converges(iso, tmp_path):
    timer = Timer()
    namespace = new_namespace(iso, "registry-crash-ctrl")
    images = small_images(iso, 10, size=8 * 1024 * 1024)
    admin = iso.admin_api()
    log = AccessLog(iso)
    with ControllerProcess(iso, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                           args=["--workers=2"]) as controller:
        prefix = controller.repository
        repository = prefix.split("/", 1)[1]
        controller.wait_leader_ready()
        one_deployment_per_image(iso, namespace, images)
        wait_for(lambda: log.manifests_written(repository) >= 2, "the first copies to land", interval=0.005)
        crash(iso, "registry-backup")
        timer.mark(f"backup registry crashed after {log.manifests_written(repository)} manifests")
        # Reconciles in flight ride out a short blip (HEAD and copier retries); wait until one gives up.
        wait_for(lambda: controller.metric("imageclone_reconcile_failures_total", reason="backup_failed") >= 1,
                 "a reconcile to fail on the outage", timeout=30)
        during = workload_images(admin, namespace)
        rewritten = [name for name, group in during.items() if group[0].startswith(prefix)]
        timer.mark(f"{len(rewritten)} of {len(during)} rewritten while the registry is down")
        assert len(rewritten) < len(during), "every workload was done before the crash: nothing was proven"

        iso.up()
        assert backup_problems(iso, all_images(during), prefix) == []
        wait_for(lambda: all(image.startswith(prefix + ":") for image in all_images(workload_images(admin, namespace))),
                 "the controller to converge once the registry is back", timeout=90)
        timer.mark("converged")
        assert controller.running() and controller.get("/healthz")[0] == 200
    after = workload_images(admin, namespace)
    assert backup_problems(iso, all_images(after), prefix) == []
    warned = [e for e in events(admin, namespace) if e["reason"] == "BackupFailed"]
    assert warned and all(iso.config.backup_registry in e["message"] for e in warned)
    assert "reconcile crashed" not in controller.log_text()


def test_backup_registry_crash_mid_playbook_fails_the_run_leaks_no_secret_and_a_rerun_converges(iso, tmp_path):
    """The migrate playbook with -vvv and the password as a variable (from a vars file, not argv), the
    backup registry crashing once copies land: the image_backup task fails naming the registry, no
    workload is rewritten, no command line and no output holds the password, the auth files are
    private while they exist and gone after; the same playbook converges once the registry is back."""
    timer = Timer()
    namespace = new_namespace(iso, "registry-crash-play")
    images = small_images(iso, 10, size=8 * 1024 * 1024)
    one_deployment_per_image(iso, namespace, images)
    repository = f"faults/playbook/{uuid.uuid4().hex[:10]}"
    prefix = f"{iso.config.backup_registry}/{repository}"
    password = iso.backup_password()
    forms = secret_forms(password)
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({
        "imageclone_backup_registry": prefix, "imageclone_backup_username": BACKUP_USER,
        "imageclone_backup_password": password, "imageclone_certs_dir": str(iso.certs_dir),
        "imageclone_kubeconfig": str(iso.kubeconfig), "imageclone_namespaces": [namespace],
        "imageclone_copier": "skopeo",  # the copier with command lines and auth files to watch
        "ansible_python_interpreter": sys.executable}))
    variables.chmod(0o600)
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "IMAGECLONE_BACKUP_"))},
           "ANSIBLE_COLLECTIONS_PATH": str(collections_root()), "ANSIBLE_NOCOLOR": "1", "TMPDIR": str(tmp),
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
           "HOME": str(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}"}
    argv = [str(BIN / "ansible-playbook"), "imageclone.backup.migrate", "-e", f"@{variables}"]
    log = AccessLog(iso)

    def play(*flags: str, crash_after: int | None = None):
        out, err = tmp_path / f"out-{len(flags)}.txt", tmp_path / f"err-{len(flags)}.txt"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            process = subprocess.Popen([*argv, *flags], stdout=stdout, stderr=stderr, env=env, cwd=tmp_path)
            with ProcessWatch(lambda: [process.pid], forms) as watch, AuthDirWatch(tmp) as authdirs:
                if crash_after is not None:
                    wait_for(lambda: log.manifests_written(repository) >= crash_after, "the first copies to land",
                             timeout=120, interval=0.005)
                    crash(iso, "registry-backup")
                    timer.mark(f"backup registry crashed after {log.manifests_written(repository)} manifests")
                process.wait(timeout=300)
        done = subprocess.CompletedProcess(process.args, process.returncode, out.read_text(), err.read_text())
        return done, watch, authdirs

    failed, watch, authdirs = play("-vvv", crash_after=2)
    timer.mark("the playbook ended")
    assert failed.returncode != 0
    assert iso.config.backup_registry in failed.stdout and "image_backup" in failed.stdout
    assert leaked(failed.stdout + failed.stderr, forms) == []
    assert watch.copies() and watch.offenders == [], watch.offenders
    assert auth_file_problems(watch, authdirs) == []
    admin = iso.admin_api()
    assert not any(image.startswith(prefix) for image in all_images(workload_images(admin, namespace)))

    iso.up()
    converged, watch, authdirs = play()
    timer.mark("the second run ended")
    assert converged.returncode == 0, converged.stdout[-3000:]
    after = workload_images(admin, namespace)
    assert all(image.startswith(prefix + ":") for image in all_images(after))
    assert backup_problems(iso, all_images(after), prefix) == []
    assert leaked(converged.stdout + converged.stderr, forms) == []
    assert watch.offenders == [] and auth_file_problems(watch, authdirs) == []


# -- the source registry is down -----------------------------------------------------------------------------


def test_source_registry_down_rewrites_nothing_and_reports_the_registry(iso, tmp_path):
    namespace = new_namespace(iso, "source-down")
    images = small_images(iso, 3)
    one_deployment_per_image(iso, namespace, images)
    source = iso.config.source_registry
    crash(iso, "registry-source")

    migration = engine_migration(iso, f"faults/source-down/{uuid.uuid4().hex[:8]}", [namespace], retry_times=1,
                                 max_retries=1)
    report = migration.run()
    assert {r.state for r in report.workloads} == {"blocked"}
    assert migration.api.writes == 0
    assert report.summary()["images"]["failed"] == len(images)
    for outcome in report.images.values():
        assert f"registry {source}" in outcome.reason and "image" in outcome.reason, outcome.reason
    for workload in report.workloads:
        assert source in workload.reason, workload.reason

    # The controller says the same in a Warning Event on each workload, and keeps retrying.
    admin = iso.admin_api()
    with ControllerProcess(iso, tmp_path, namespaces=[namespace], lease_namespace=namespace) as controller:
        controller.wait_leader_ready()
        warned = wait_for(lambda: [e for e in events(admin, namespace) if e["reason"] == "BackupFailed"],
                          "a BackupFailed event", timeout=60)
        assert f"registry {source}" in warned[0]["message"], warned[0]["message"]
        assert controller.metric("imageclone_kube_writes_total") == 0
        iso.up()
        wait_for(lambda: all(image.startswith(controller.repository + ":")
                             for image in all_images(workload_images(admin, namespace))),
                 "convergence once the source registry is back", timeout=60)


# -- a source tag deleted upstream after the backup (shared lab) --------------------------------------------


def test_a_tag_deleted_upstream_keeps_working_from_the_backup_with_the_workloads_pull_secret(lab, namespace, tmp_path):
    image = small_images(lab, 1, prefix="faults/vanishing")[0]
    admin = lab.admin_api()
    admin.create(DEPLOYMENT, namespace, simple_deployment("app", {"main": image}))
    repository = f"faults/vanishing/{uuid.uuid4().hex[:10]}"
    first = engine_migration(lab, repository, [namespace], pull_secret_name="backup-pull").run()
    assert reports_by_name(first)["Deployment/app"].state == "rewritten"

    lab.delete_source_tag(image.split("/", 1)[1])  # the upstream owner deletes the tag
    again = engine_migration(lab, repository, [namespace], pull_secret_name="backup-pull").run()
    assert reports_by_name(again)["Deployment/app"].state == "unchanged"
    assert again.images[next(iter(again.images))].state == "present"

    stored = admin.get(DEPLOYMENT, namespace, "app")
    spec = stored["spec"]["template"]["spec"]
    pinned = spec["containers"][0]["image"]
    assert json.loads(stored["metadata"]["annotations"][ORIGINAL_IMAGES])["containers"]["main"] == image
    secret_name = spec["imagePullSecrets"][0]["name"]
    secret = admin.get(SECRET, namespace, secret_name)
    authfile = tmp_path / "pull-secret.json"
    fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64decode(secret["data"][DATA_KEY]))

    # Pull it as the kubelet would: by digest, with nothing but the workload's pull secret.
    repository_ref, digest = pinned.split("@", 1)
    name = repository_ref.rsplit(":", 1)[0]
    inspected = json.loads(lab.skopeo("inspect", f"--authfile={authfile}", f"--cert-dir={lab.certs_dir}",
                                      f"docker://{name}@{digest}"))
    assert inspected["Digest"] == digest
    lab.skopeo("copy", f"--src-authfile={authfile}", f"--src-cert-dir={lab.certs_dir}",
               f"docker://{name}@{digest}", f"oci:{tmp_path / 'pulled'}:app")
    assert (tmp_path / "pulled" / "index.json").exists()
    with pytest.raises(RuntimeError):  # and upstream really is gone
        lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"docker://{image}")
