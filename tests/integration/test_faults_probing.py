"""Reliability defects found by probing (issue 11), each pinned against the real lab.

* a lost backup: restored from upstream by the playbook, the modules and the engine alike, or reported
  unprotected when upstream lost it too;
* a nested backup name over 255 characters: that workload blocked, the others proceed (playbook and
  controller);
* moving to another backup repository keeps the true original, so a revert still reaches upstream;
* no module file holding the password is left on disk when a playbook run is killed;
* rough edges: the kubeconfig path in errors, check mode's wording, Terminating namespaces, a missing
  pull Secret for an authenticated backup registry, a revert to an original gone upstream.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from builders import NGINX
from faults_support import (
    NAMESPACE,
    ProcessWatch,
    big_image,
    events,
    secret_forms,
    simple_deployment,
    small_images,
    wait_for_skopeo_copy,
    workload_images,
)
from test_modules_lab import adhoc
from test_playbook_lab import BIN, recap, run_playbook, variables

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.lab import BACKUP_USER
from lab.processes import kill, wait_gone
from lab.waiting import wait_for

DEPLOYMENT = KINDS["Deployment"]


@pytest.fixture
def api(lab) -> KubeApi:
    return lab.admin_api()


def deploy(api: KubeApi, namespace: str, **images: str) -> None:
    """One single-container Deployment per ``name=image``."""
    for name, image in images.items():
        api.create(DEPLOYMENT, namespace, simple_deployment(name, {"main": image}))


def image_of(api: KubeApi, namespace: str, name: str) -> str:
    return workload_images(api, namespace, ["Deployment"])[f"Deployment/{name}"][0]


def originals_of(api: KubeApi, namespace: str, name: str) -> dict:
    return json.loads(api.get(DEPLOYMENT, namespace, name)["metadata"]["annotations"][ORIGINAL_IMAGES])


def resolves(lab, reference: str) -> bool:
    """Whether the backup registry serves a pinned backup reference: its digest, and its tag at that digest
    (skopeo takes no reference with both)."""
    pinned = parse_reference(reference)
    try:
        lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
                   f"docker://{pinned.repository}@{pinned.digest}")
        tagged = lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
                            f"docker://{pinned.repository}:{pinned.tag}")
    except RuntimeError:
        return False
    return f"sha256:{hashlib.sha256(tagged.encode()).hexdigest()}" == pinned.digest


def lose_backup(lab, reference: str) -> None:
    """Delete the manifest a pinned backup reference names from the backup registry (its tags go with it)."""
    pinned = parse_reference(reference)
    lab.skopeo("delete", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
               f"docker://{pinned.repository}@{pinned.digest}")
    assert not resolves(lab, reference)


def module_args(lab, backup: dict, namespace: str, **more) -> dict:
    return {**backup, "kubeconfig": str(lab.kubeconfig), "namespaces": [namespace], **more}


# -- A: a lost backup ---------------------------------------------------------------------------------------

def test_the_playbook_restores_a_lost_backup_and_blocks_a_workload_whose_original_is_gone_too(lab, api, namespace):
    kept, doomed = small_images(lab, 2, prefix="probing/lost")
    deploy(api, namespace, kept=kept, doomed=doomed)
    extra = variables(lab, [namespace], f"probing/{uuid.uuid4().hex[:8]}")
    run_playbook(lab, "migrate", extra)
    backups = {name: image_of(api, namespace, name) for name in ("kept", "doomed")}
    for backup in backups.values():
        lose_backup(lab, backup)
    lab.delete_source_tag(doomed.split("/", 1)[1])  # upstream lost it too

    rerun = run_playbook(lab, "migrate", extra, check=False)

    assert rerun.returncode == 2, "the doomed workload is unprotected: the run ends failed, after the rest"
    assert recap(rerun.stdout)["changed"] >= 1, rerun.stdout[-3000:]
    assert resolves(lab, backups["kept"]), "the lost backup was not restored where the workload points"
    assert "restored 1" in rerun.stdout, rerun.stdout[-3000:]
    blocked = next(line for line in rerun.stdout.splitlines() if f"blocked: Deployment/{namespace}/doomed" in line)
    assert backups["doomed"] in blocked and doomed in blocked and "unprotected" in blocked, blocked
    assert {name: image_of(api, namespace, name) for name in backups} == backups  # never rewritten away


def test_the_modules_agree_on_a_lost_backup_report_check_mode_and_restore_in_a_real_run(lab, api, namespace,
                                                                                      tmp_path):
    [image] = small_images(lab, 1, prefix="probing/modules-lost")
    deploy(api, namespace, web=image)
    backup = lab.backup_options("probing")
    adhoc(tmp_path, "image_backup", {**backup, "images": [image]})
    args = module_args(lab, backup, namespace)
    assert adhoc(tmp_path, "workload_rewrite", args)["summary"]["rewritten"] == 1
    pinned = image_of(api, namespace, "web")
    lose_backup(lab, pinned)

    info = adhoc(tmp_path, "workload_images_info", args)
    [web] = info["workloads"]
    [entry] = web["images"]
    assert entry["state"] == "missing" and pinned in entry["reason"] and image in entry["reason"], entry
    assert web["ready"] is False and web["blockers"] and pinned in web["blockers"][0], web

    checked = adhoc(tmp_path, "workload_rewrite", args, "--check")
    [would] = checked["images"]
    assert checked["changed"] is True and would["state"] == "restored" and "would restore" in would["reason"]
    assert not resolves(lab, pinned), "check mode restored the backup"

    applied = adhoc(tmp_path, "workload_rewrite", args)
    [restored] = applied["images"]
    assert applied["changed"] is True and restored["state"] == "restored", applied
    assert applied["workloads"][0]["state"] == "unchanged"
    assert resolves(lab, pinned)
    assert image_of(api, namespace, "web") == pinned

    again = adhoc(tmp_path, "workload_images_info", args)
    assert again["workloads"][0]["ready"] is True and again["workloads"][0]["images"][0]["state"] == "present"

    lose_backup(lab, pinned)
    lab.delete_source_tag(image.split("/", 1)[1])
    unprotected = adhoc(tmp_path, "workload_rewrite", args)
    [report] = unprotected["workloads"]
    assert report["state"] == "blocked" and pinned in report["reason"] and image in report["reason"], report
    assert "unprotected" in report["reason"] and unprotected["changed"] is False
    assert adhoc(tmp_path, "workload_images_info", args)["workloads"][0]["ready"] is False


# -- B: a nested backup name over 255 characters ------------------------------------------------------------

def too_long_for_nested(lab) -> str:
    """A valid source reference (246 characters) whose nested backup name passes 255 characters under any
    target in the lab's backup registry (the image need not exist: naming fails first)."""
    return f"{lab.config.source_registry}/probing/{'l' * 222}:1"


def test_the_playbook_blocks_a_workload_whose_nested_backup_name_is_too_long_and_migrates_the_others(
        lab, api, namespace):
    long_image = too_long_for_nested(lab)
    deploy(api, namespace, good=lab.source_image(NGINX), long=long_image)
    target = f"{lab.config.backup_registry}/probing/{uuid.uuid4().hex[:8]}"
    extra = {**variables(lab, [namespace], "unused"), "imageclone_backup_registry": target,
             "imageclone_naming": "nested"}

    done = run_playbook(lab, "migrate", extra, check=False)

    assert done.returncode == 2, "the long one stays unprotected: the run ends failed, after the rest"
    assert image_of(api, namespace, "good").startswith(f"{target}/")
    assert image_of(api, namespace, "long") == long_image
    blocked = next(line for line in done.stdout.splitlines() if f"blocked: Deployment/{namespace}/long" in line)
    assert long_image in blocked and "more than 255" in blocked, blocked


def test_the_controller_blocks_a_workload_whose_nested_backup_name_is_too_long_with_an_event(
        lab, api, namespace, tmp_path):
    long_image = too_long_for_nested(lab)
    target = f"{lab.config.backup_registry}/probing/{uuid.uuid4().hex[:8]}"
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace, repository=target,
                           args=["--naming=nested"]) as controller:
        controller.wait_leader_ready()
        deploy(api, namespace, long=long_image, good=lab.source_image(NGINX))
        wait_for(lambda: image_of(api, namespace, "good").startswith(f"{target}/"), "the good workload rewritten")
        [event] = wait_for(lambda: [e for e in events(api, namespace, "long") if e["reason"] == "RewriteBlocked"],
                           "a RewriteBlocked Event for the workload")
        assert event["type"] == "Warning" and long_image in event["message"] and "more than 255" in event["message"]
        assert controller.metric("imageclone_reconcile_total", result="blocked") >= 1
        assert controller.metric("imageclone_reconcile_failures_total", reason="internal_error") == 0
        assert "reconcile crashed" not in controller.log_text()
    assert image_of(api, namespace, "long") == long_image


# -- C: moving to another backup repository ------------------------------------------------------------------

def test_moving_to_another_backup_repository_keeps_the_upstream_original_and_revert_reaches_it(lab, api,
                                                                                              namespace):
    upstream = lab.source_image(NGINX)
    deploy(api, namespace, web=upstream)
    first = variables(lab, [namespace], f"probing/a-{uuid.uuid4().hex[:8]}")
    second = variables(lab, [namespace], f"probing/b-{uuid.uuid4().hex[:8]}")

    run_playbook(lab, "migrate", first)
    assert image_of(api, namespace, "web").startswith(first["imageclone_backup_registry"] + ":")
    run_playbook(lab, "migrate", second)
    assert image_of(api, namespace, "web").startswith(second["imageclone_backup_registry"] + ":")
    assert originals_of(api, namespace, "web") == {"containers": {"main": upstream}}

    run_playbook(lab, "revert", second)
    assert image_of(api, namespace, "web") == upstream


# -- D: no secret on disk after an interrupted playbook run ----------------------------------------------------

def files_holding(roots: list[Path], forms: list[str]) -> list[str]:
    """Every file under ``roots`` that holds one of ``forms`` (named by path and form number, never echoed)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                content = path.read_bytes()
                found += [f"{path.relative_to(root.parent)}: secret form #{number}"
                          for number, form in enumerate(forms) if form.encode() in content]
    return found


def test_a_playbook_run_killed_mid_copy_leaves_no_password_on_disk(lab, api, namespace, tmp_path):
    from test_modules_lab import environment

    image = big_image(lab, "probing/big")
    deploy(api, namespace, big=image)
    password = lab.backup_password()
    extra = {**variables(lab, [namespace], f"probing/{uuid.uuid4().hex[:8]}"),
             "imageclone_backup_username": BACKUP_USER, "imageclone_backup_password": password,
             "imageclone_copier": "skopeo"}  # killed mid-copy with a skopeo child and its auth file
    del extra["imageclone_backup_authfile"]
    secret_vars = tmp_path / "secret-vars.json"  # outside the scanned directories, like a vault file
    secret_vars.write_text(json.dumps(extra))
    secret_vars.chmod(0o600)
    home, temp, work = (tmp_path / name for name in ("home", "tmp", "work"))
    for directory in (home, temp, work):
        directory.mkdir()
    # The local connection finds "~/.ansible/tmp" through the passwd entry, not HOME: point it into HOME.
    env = environment(HOME=str(home), TMPDIR=str(temp), ANSIBLE_REMOTE_TMP=str(home / ".ansible" / "tmp"),
                      PATH=f"{BIN}:{os.environ['PATH']}")
    output = open(tmp_path / "playbook.log", "wb")
    try:
        process = subprocess.Popen([str(BIN / "ansible-playbook"), "imageclone.backup.migrate", "-e",
                                    f"@{secret_vars}"], cwd=work, env=env, start_new_session=True,
                                   stdout=output, stderr=subprocess.STDOUT)
        with ProcessWatch(lambda: [process.pid], secret_forms(password)) as watch:
            copy = wait_for_skopeo_copy(watch, "probing/big", timeout=120)
            os.killpg(process.pid, signal.SIGKILL)  # the whole run: ansible-playbook, its workers, the module
            process.wait(30)
            kill(copy.pid)  # in case it left the group
            assert wait_gone(copy.pid)
        assert not watch.offenders, watch.offenders
        assert files_holding([home, temp, work], secret_forms(password)) == []
    finally:
        output.close()
        secret_vars.unlink()


# -- E: rough edges -------------------------------------------------------------------------------------------

def test_a_missing_kubeconfig_is_named_in_the_error(lab, tmp_path):
    missing = tmp_path / "no-such-dir" / "kubeconfig"
    result = adhoc(tmp_path, "workload_images_info", {**lab.backup_options("probing"), "kubeconfig": str(missing),
                                                      "check_backups": False})
    assert result.get("failed") and str(missing) in result["msg"], result


def test_check_mode_says_what_would_be_copied_and_rewritten(lab, api, namespace):
    deploy(api, namespace, web=lab.source_image(NGINX))
    checked = run_playbook(lab, "migrate", variables(lab, [namespace], f"probing/{uuid.uuid4().hex[:8]}"), "--check")
    assert "workloads: 1 (would rewrite 1, unchanged 0, owned 0, blocked 0, failed 0)" in checked.stdout, checked.stdout
    assert "images: 1 (would copy 1, present 0, would restore 0, missing 0, failed 0)" in checked.stdout


def test_workloads_of_a_terminating_namespace_are_skipped(lab, api, tmp_path):
    namespace = f"probing-terminating-{uuid.uuid4().hex[:6]}"
    api.create(NAMESPACE, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    # The finalizer keeps the Deployment, and so the namespace, in place while the namespace is deleted.
    api.create(DEPLOYMENT, namespace, simple_deployment("held", {"main": lab.source_image(NGINX)},
                                                        finalizers=["imageclone.io/probing-hold"]))
    backup = lab.backup_options("probing")
    adhoc(tmp_path, "image_backup", {**backup, "images": [lab.source_image(NGINX)]})
    api.delete(NAMESPACE, None, namespace)
    try:
        wait_for(lambda: api.get(NAMESPACE, None, namespace).get("status", {}).get("phase") == "Terminating",
                 "the namespace terminating")
        result = adhoc(tmp_path, "workload_rewrite", module_args(lab, backup, namespace))
        assert result["workloads"] == [] and result["changed"] is False, result
        assert {(s["kind"], s["name"], s["reason"]) for s in result["skipped_workloads"]
                if s["kind"] == "Deployment"} == {("Deployment", "held", f"namespace {namespace} is terminating")}
        assert image_of(api, namespace, "held") == lab.source_image(NGINX)
    finally:
        api.patch(DEPLOYMENT, namespace, "held", {"metadata": {"finalizers": None}})


def test_rewriting_to_an_authenticated_registry_without_a_pull_secret_warns(lab, api, namespace, tmp_path):
    deploy(api, namespace, web=lab.source_image(NGINX))
    backup = lab.backup_options("probing")
    del backup["backup_authfile"]
    login = {**backup, "backup_username": BACKUP_USER, "backup_password": lab.backup_password()}
    adhoc(tmp_path, "image_backup", {**login, "images": [lab.source_image(NGINX)]})

    result = adhoc(tmp_path, "workload_rewrite", module_args(lab, login, namespace))

    assert result["summary"]["rewritten"] == 1
    [warning] = [w for w in result.get("warnings", []) if "pull_secret" in w]
    assert lab.config.backup_registry in warning and "fail to pull" in warning
    assert lab.backup_password() not in json.dumps(result)


def test_a_revert_to_an_original_gone_upstream_is_blocked_unless_forced(lab, api, namespace, tmp_path):
    [image] = small_images(lab, 1, prefix="probing/revert-gone")
    deploy(api, namespace, web=image)
    backup = lab.backup_options("probing")
    args = module_args(lab, backup, namespace)
    adhoc(tmp_path, "image_backup", {**backup, "images": [image]})
    adhoc(tmp_path, "workload_rewrite", args)
    pinned = image_of(api, namespace, "web")
    lab.delete_source_tag(image.split("/", 1)[1])

    refused = adhoc(tmp_path, "workload_rewrite", {**args, "state": "reverted"})
    [report] = refused["workloads"]
    assert report["state"] == "blocked" and image in report["reason"] and "no longer exists" in report["reason"]
    assert refused["changed"] is False and image_of(api, namespace, "web") == pinned

    forced = adhoc(tmp_path, "workload_rewrite", {**args, "state": "reverted", "force": True})
    assert forced["workloads"][0]["state"] == "reverted" and image_of(api, namespace, "web") == image
