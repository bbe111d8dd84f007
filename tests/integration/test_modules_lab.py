"""The modules through the real ``ansible`` and ``ansible-playbook`` CLIs, against the lab."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import BUSYBOX, JENKINS, NGINX, POSTGRES, REDIS, manifest, pod_spec

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.collection import collections_root
from lab.lab import BACKUP_USER
from lab.workloads import pod_spec_of

BIN = Path(sys.executable).parent
MISSING = "library/nginx:no-such-tag"


@pytest.fixture
def backup(lab) -> dict[str, Any]:
    """Backup options for the lab, into a repository of this test's own."""
    return lab.backup_options("modules")


@pytest.fixture
def create(lab, admin, namespace):
    def make(kind: str, name: str, replicas: int | None = None, **images: str) -> None:
        body = manifest(kind, name, pod_spec(lab, kind, **images))
        if replicas is not None:
            body["spec"]["replicas"] = replicas
        admin.create(KINDS[kind], namespace, body)

    return make


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment without Ansible, image-clone or K8S_AUTH settings, plus the collection."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "IMAGECLONE_BACKUP_", "K8S_AUTH_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_root()), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_DEPRECATION_WARNINGS="false", ANSIBLE_RETRY_FILES_ENABLED="false", **extra)
    return env


def run(argv: list[str], cwd: Path, json_output: bool) -> subprocess.CompletedProcess:
    extra = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true"} \
        if json_output else {}
    return subprocess.run(argv, cwd=cwd, env=environment(**extra), capture_output=True, text=True, timeout=600)


def adhoc(cwd: Path, module: str, args: dict[str, Any], *flags: str) -> dict[str, Any]:
    """``ansible localhost -m imageclone.backup.<module>``: the module's result."""
    done = run([str(BIN / "ansible"), "localhost", "-m", f"imageclone.backup.{module}", "-a", json.dumps(args),
                *flags], cwd, json_output=True)
    try:
        return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError(f"ansible failed ({done.returncode}):\n{done.stdout}\n{done.stderr}") from None


def adhoc_text(cwd: Path, module: str, args: dict[str, Any], *flags: str) -> subprocess.CompletedProcess:
    """The same with the default output, for reading what a person would see."""
    return run([str(BIN / "ansible"), "localhost", "-m", f"imageclone.backup.{module}", "-a", json.dumps(args),
                *flags], cwd, json_output=False)


def playbook(cwd: Path, tasks: list[dict[str, Any]], *flags: str, json_output: bool = True):
    """Run ``tasks`` in one play on localhost; by task name, their results (or, as text, the whole run)."""
    play = [{"name": "modules", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "tasks": tasks}]
    path = cwd / f"play-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    done = run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(path), *flags], cwd, json_output)
    if not json_output:
        return done
    try:
        document = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"ansible-playbook failed ({done.returncode}):\n{done.stdout}\n{done.stderr}") from None
    return {task["task"]["name"]: task["hosts"]["localhost"] for task in document["plays"][0]["tasks"]}


def stored_pod_spec(admin: KubeApi, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return pod_spec_of(kind, admin.get(KINDS[kind], namespace, name))


def annotations_of(admin: KubeApi, kind: str, namespace: str, name: str) -> dict[str, str]:
    return admin.get(KINDS[kind], namespace, name)["metadata"].get("annotations") or {}


def secret_forms(lab) -> list[str]:
    password = lab.backup_password()
    return [password, base64.b64encode(f"{BACKUP_USER}:{password}".encode()).decode(),
            base64.b64encode(password.encode()).decode()]


def test_image_backup_copies_then_reports_present(lab, backup, tmp_path):
    images = [lab.source_image(NGINX), lab.source_image(BUSYBOX)]
    first = adhoc(tmp_path, "image_backup", {**backup, "images": images})
    assert first["changed"] is True and first["copied"] == images, first

    second = adhoc(tmp_path, "image_backup", {**backup, "images": images})
    assert second["changed"] is False and second["present"] == images and second["copied"] == []
    assert [i["digest"] for i in second["images"]] == [lab.config.seeds[NGINX], lab.config.seeds[BUSYBOX]]


def test_verbose_and_diff_output_never_contain_the_backup_password(lab, backup, namespace, create, admin, tmp_path):
    login = {"backup_registry": backup["backup_registry"], "certs_dir": backup["certs_dir"],
             "backup_username": BACKUP_USER, "backup_password": lab.backup_password()}
    create("Deployment", "web")
    outputs = []

    copied = adhoc_text(tmp_path, "image_backup", {**login, "images": [lab.source_image(i) for i in
                                                                       (NGINX, REDIS, BUSYBOX)]}, "-vvv")
    assert copied.returncode == 0 and '"copied": [' in copied.stdout, copied.stdout
    outputs.append(copied)
    failed = adhoc_text(tmp_path, "image_backup", {**login, "images": [lab.source_image(MISSING)]}, "-vvv")
    assert failed.returncode != 0 and "not backed up" in failed.stdout
    outputs.append(failed)

    rewrite = {"imageclone.backup.workload_rewrite": {
        **login, "kubeconfig": str(lab.kubeconfig), "namespaces": [namespace], "pull_secret": "backup-pull"}}
    checked = playbook(tmp_path, [{"name": "rewrite", **rewrite}], "-vvv", "--diff", "--check", json_output=False)
    applied = playbook(tmp_path, [{"name": "rewrite", **rewrite}], "-vvv", "--diff", json_output=False)
    for done in (checked, applied):
        assert done.returncode == 0 and "+++ after: Deployment/" in done.stdout, done.stdout
        outputs.append(done)
    assert stored_pod_spec(admin, "Deployment", namespace, "web")["imagePullSecrets"] == [{"name": "backup-pull"}]

    for done in outputs:
        for secret in secret_forms(lab):
            assert secret not in done.stdout and secret not in done.stderr


def test_workload_images_info_lists_a_namespace_with_states(lab, backup, namespace, create, tmp_path):
    adhoc(tmp_path, "image_backup", {**backup, "images": [lab.source_image(i) for i in (NGINX, REDIS, BUSYBOX)]})
    create("Deployment", "web")
    create("StatefulSet", "db", side=MISSING)

    info = adhoc(tmp_path, "workload_images_info", {**backup, "kubeconfig": str(lab.kubeconfig),
                                                    "namespaces": [namespace]})

    assert info["changed"] is False
    workloads = {w["key"]: w for w in info["workloads"]}
    web, db = workloads[f"Deployment/{namespace}/web"], workloads[f"StatefulSet/{namespace}/db"]
    assert web["ready"] is True and {i["state"] for i in web["images"]} == {"present"}
    assert len(web["rewrite"]) == 3
    assert db["ready"] is False and {i["container"]: i["state"] for i in db["images"]} == {
        "init": "present", "main": "present", "side": "missing"}
    assert any(s["kind"] == "ReplicaSet" for s in info["skipped_workloads"])
    assert lab.source_image(MISSING) in info["images"]


def test_rewrite_check_apply_rerun_and_revert(lab, backup, namespace, create, admin, tmp_path):
    # No Deployment replica: these pods would stay Pending, and the rewrite below waits for
    # rollouts (pods turning Ready on the lab's node is tests/integration/test_node_e2e.py's job).
    create("Deployment", "deployment", replicas=0)
    for kind in ("StatefulSet", "DaemonSet", "CronJob"):
        create(kind, kind.lower())
    adhoc(tmp_path, "image_backup", {**backup, "images": [lab.source_image(i) for i in (NGINX, REDIS, BUSYBOX)]})
    originals = {kind: stored_pod_spec(admin, kind, namespace, kind.lower())
                 for kind in ("Deployment", "StatefulSet", "DaemonSet", "CronJob")}
    args = {**backup, "kubeconfig": str(lab.kubeconfig), "namespaces": [namespace]}

    checked = adhoc(tmp_path, "workload_rewrite", args, "--check")
    assert checked["changed"] is True and checked["summary"]["rewritten"] == 4
    for kind, spec in originals.items():
        assert stored_pod_spec(admin, kind, namespace, kind.lower()) == spec, f"check mode wrote {kind}"

    applied = adhoc(tmp_path, "workload_rewrite", {**args, "wait": True, "wait_timeout": 120})
    assert applied["changed"] is True and applied["summary"]["rewritten"] == 4, applied
    for kind in originals:
        containers = stored_pod_spec(admin, kind, namespace, kind.lower())["containers"]
        assert all(c["image"].startswith(backup["backup_registry"] + ":") for c in containers)
        assert ORIGINAL_IMAGES in annotations_of(admin, kind, namespace, kind.lower())

    again = adhoc(tmp_path, "workload_rewrite", args)
    assert again["changed"] is False and again["summary"]["unchanged"] == 4 and again["summary"]["rewritten"] == 0

    reverted = adhoc(tmp_path, "workload_rewrite", {**args, "state": "reverted"})
    assert reverted["changed"] is True and reverted["summary"]["reverted"] == 4
    for kind, spec in originals.items():
        assert stored_pod_spec(admin, kind, namespace, kind.lower()) == spec, f"{kind} is not back to what it was"
        assert ORIGINAL_IMAGES not in annotations_of(admin, kind, namespace, kind.lower())


def test_a_workload_with_a_missing_image_is_blocked_while_the_others_are_rewritten(lab, backup, namespace, create,
                                                                                   admin, tmp_path):
    create("Deployment", "web")
    create("Deployment", "api", main=POSTGRES, init=JENKINS)
    create("Deployment", "broken", side=MISSING)
    before = stored_pod_spec(admin, "Deployment", namespace, "broken")
    options = {**backup, "kubeconfig": str(lab.kubeconfig), "namespaces": [namespace]}

    results = playbook(tmp_path, [
        {"name": "discover", "imageclone.backup.workload_images_info": {**options, "check_backups": False},
         "register": "discovery"},
        {"name": "back up", "imageclone.backup.image_backup": {
            **backup, "images": "{{ discovery.images }}", "fail_on_missing": False}},
        {"name": "rewrite", "imageclone.backup.workload_rewrite": {
            **options, "workloads": "{{ discovery.workloads }}"}},
    ])

    assert results["back up"]["missing"] == [lab.source_image(MISSING)]
    assert set(results["back up"]["copied"]) == {lab.source_image(i) for i in (NGINX, REDIS, BUSYBOX, POSTGRES,
                                                                               JENKINS)}
    states = {w["name"]: w for w in results["rewrite"]["workloads"]}
    assert states["web"]["state"] == states["api"]["state"] == "rewritten"
    assert states["broken"]["state"] == "blocked" and "no-such-tag" in states["broken"]["reason"]
    assert results["rewrite"]["changed"] is True and not results["rewrite"].get("failed")
    assert stored_pod_spec(admin, "Deployment", namespace, "broken") == before
