"""A private source image is backed up with its workload's own pull Secret alone (no source auth file), by the
migration playbook and by the controller; without a usable Secret, or with use_pull_secrets off, the workload is
blocked with a reason naming what is wrong, and the Secret's content shows nowhere."""
from __future__ import annotations

import uuid

import pytest
from builders import BUSYBOX, NGINX, REDIS, manifest
from private_registry import PrivateRegistry
from test_controller_harness import events_for, rewritten_to
from test_modules_lab import adhoc
from test_playbook_lab import run_playbook, variables

from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import SECRET
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.waiting import wait_for
from lab.workloads import container_images

DEPLOYMENT = KINDS["Deployment"]


@pytest.fixture(scope="module")
def private(lab, tmp_path_factory):
    with PrivateRegistry(lab, tmp_path_factory.mktemp("private-registry"), (NGINX, REDIS, BUSYBOX)) as registry:
        yield registry


def private_deployment(private: PrivateRegistry, name: str, seed: str, *secrets: str) -> dict:
    spec: dict = {"containers": [{"name": "main", "image": private.image(seed)}]}
    if secrets:
        spec["imagePullSecrets"] = [{"name": secret} for secret in secrets]
    return manifest("Deployment", name, spec)


def leaked(private: PrivateRegistry, text: str) -> list[str]:
    return [form for form in private.secret_forms() if form in text]


def test_the_playbook_copies_a_private_image_with_the_workloads_pull_secret_alone(lab, namespace, private):
    admin = lab.admin_api()
    admin.create(SECRET, namespace, private.secret("team-cred"))
    admin.create(DEPLOYMENT, namespace, private_deployment(private, "team-app", NGINX, "team-cred"))
    repository = f"pullcreds/{uuid.uuid4().hex[:8]}"
    extra = variables(lab, [namespace], repository)
    assert "imageclone_source_authfile" not in extra

    done = run_playbook(lab, "migrate", extra, "-v")
    image = container_images("Deployment", admin.get(DEPLOYMENT, namespace, "team-app"))["main"]
    assert image.startswith(f"{extra['imageclone_backup_registry']}:") and image.endswith(lab.config.seeds[NGINX])
    assert "workloads: 1 (rewritten 1, unchanged 0, owned 0, blocked 0, failed 0)" in done.stdout, done.stdout[-3000:]
    assert not leaked(private, done.stdout + done.stderr)


def test_without_a_usable_secret_or_with_the_option_off_the_modules_block_the_workload(lab, namespace, private,
                                                                                      tmp_path):
    admin = lab.admin_api()
    admin.create(SECRET, namespace, private.secret("team-cred"))
    admin.create(DEPLOYMENT, namespace, private_deployment(private, "orphan", REDIS, "absent-cred"))
    admin.create(DEPLOYMENT, namespace, private_deployment(private, "team-app", BUSYBOX, "team-cred"))
    backup = {**lab.backup_options("pullcreds"), "kubeconfig": str(lab.kubeconfig)}
    options = {**backup, "namespaces": [namespace]}

    found = adhoc(tmp_path, "workload_images_info", options)
    assert found["pull_secrets"] == {private.image(REDIS): [f"{namespace}/absent-cred"],
                                     private.image(BUSYBOX): [f"{namespace}/team-cred"]}
    copied = adhoc(tmp_path, "image_backup", {**backup, "images": found["images"],
                                               "pull_secrets": found["pull_secrets"], "fail_on_missing": False})
    states = {image["source"]: (image["state"], image["reason"]) for image in copied["images"]}
    assert states[private.image(BUSYBOX)] == ("copied", None)
    state, reason = states[private.image(REDIS)]
    assert state == "failed" and "no username/password configured" in reason
    assert f"pull Secret {namespace}/absent-cred does not exist" in reason

    rewritten = adhoc(tmp_path, "workload_rewrite", options)
    by_name = {workload["name"]: workload for workload in rewritten["workloads"]}
    assert by_name["team-app"]["state"] == "rewritten"
    assert by_name["orphan"]["state"] == "blocked"
    assert f"pull Secret {namespace}/absent-cred does not exist" in by_name["orphan"]["reason"]

    admin.create(DEPLOYMENT, namespace, private_deployment(private, "ignored", NGINX, "team-cred"))
    off = adhoc(tmp_path, "workload_rewrite", {**options, "use_pull_secrets": False,
                                                "workloads": [{"kind": "Deployment", "namespace": namespace,
                                                               "name": "ignored"}]})
    [ignored] = off["workloads"]
    assert ignored["state"] == "blocked" and "no username/password configured" in ignored["reason"], ignored
    assert not leaked(private, repr([found, copied, rewritten, off]))


def test_the_controller_copies_a_private_image_with_the_workloads_pull_secret_alone(lab, namespace, private, tmp_path):
    admin = lab.admin_api()
    admin.create(SECRET, namespace, private.secret("team-cred"))
    admin.create(DEPLOYMENT, namespace, private_deployment(private, "team-app", NGINX, "team-cred"))
    admin.create(DEPLOYMENT, namespace, private_deployment(private, "orphan", REDIS, "absent-cred"))
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace) as process:
        process.wait_leader_ready()
        wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(DEPLOYMENT, namespace, "team-app")),
                   "the private image copied with the workload's pull Secret and the workload rewritten")
        failed = wait_for(lambda: [e for e in events_for(lab, namespace, "orphan") if e["reason"] == "BackupFailed"],
                            "a BackupFailed Event for the workload whose pull Secret does not exist")
        assert f"pull Secret {namespace}/absent-cred does not exist" in failed[0]["message"], failed[0]["message"]
        assert "--sourceAuthFile" not in " ".join(process.argv)
    assert container_images("Deployment", admin.get(DEPLOYMENT, namespace, "orphan"))["main"] == private.image(REDIS)
    assert not leaked(private, process.log_text() + repr(events_for(lab, namespace, "orphan")))


def test_the_controller_with_use_pull_secrets_off_leaves_the_workload_blocked(lab, namespace, private, tmp_path):
    admin = lab.admin_api()
    admin.create(SECRET, namespace, private.secret("team-cred"))
    admin.create(DEPLOYMENT, namespace, private_deployment(private, "team-app", NGINX, "team-cred"))
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                           args=["--usePullSecrets=false"]) as process:
        process.wait_leader_ready()
        failed = wait_for(lambda: [e for e in events_for(lab, namespace, "team-app")
                                     if e["reason"] == "BackupFailed"], "a BackupFailed Event")
    assert "no username/password configured" in failed[0]["message"], failed[0]["message"]
    assert container_images("Deployment", admin.get(DEPLOYMENT, namespace, "team-app"))["main"] == private.image(NGINX)
