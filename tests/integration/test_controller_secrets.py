"""The backup password never shows: not in logs, Events, /metrics, nor on the command line."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
from builders import POSTGRES, manifest, pod_spec
from test_controller_harness import rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.kube import Resource
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.lab import BACKUP_USER
from lab.waiting import wait_for

EVENT = Resource("Event", "v1", "events")


def leaks(secret: str, text: str) -> bool:
    basic = base64.b64encode(f"{BACKUP_USER}:{secret}".encode()).decode()
    return secret in text or basic.rstrip("=") in text


def exercise(lab, namespace: str, process: ControllerProcess) -> str:
    """Converge one good and one broken workload (Events, warnings, retries); return everything visible."""
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    admin.create(deployment, namespace, manifest("Deployment", "good", pod_spec(lab, "Deployment")))
    admin.create(deployment, namespace, manifest("Deployment", "broken", pod_spec(
        lab, "Deployment", main=POSTGRES, side="library/nginx:no-such-tag")))
    process.wait_leader_ready()
    wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(deployment, namespace, "good")),
             "the good workload rewritten")
    wait_for(lambda: len({e["reason"] for e in admin.list(EVENT, namespace)[0]}) >= 2, "both Events")
    events, _ = admin.list(EVENT, namespace)
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    _, metrics = process.get("/metrics")
    return "\n".join([process.log_text(), repr(events), metrics, cmdline])


@pytest.mark.parametrize("source", ["environment", "authfile"])
def test_the_password_never_appears(lab, namespace, tmp_path, source):
    password = lab.backup_password()
    if source == "environment":
        options = dict(authfile=False, args=[f"--backupRegistryUser={BACKUP_USER}"],
                       env={"IMAGECLONE_BACKUP_PASSWORD": password})
    else:
        options = dict(authfile=True)
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace, **options) as process:
        visible = exercise(lab, namespace, process)
        assert f"credentials\":\"{'environment' if source == 'environment' else 'auth file'}" in process.log_text()
    assert not leaks(password, visible + process.log_text())


def test_a_password_on_argv_works_but_warns_without_repeating_it(lab, namespace, tmp_path):
    password = lab.backup_password()
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace, authfile=False,
                           args=[f"--backupRegistryUser={BACKUP_USER}",
                                 f"--backupRegistryPassword={password}"]) as process:
        process.wait_leader_ready()
        admin = lab.admin_api()
        admin.create(KINDS["Deployment"], namespace, manifest("Deployment", "good", pod_spec(lab, "Deployment")))
        wait_for(lambda: rewritten_to(process.repository, "Deployment",
                                      admin.get(KINDS["Deployment"], namespace, "good")), "rewrite")
    warnings = [line for line in process.log_lines() if line.get("level") == "warning"
                and "command line" in line.get("msg", "")]
    assert len(warnings) == 1 and "IMAGECLONE_BACKUP_PASSWORD" in warnings[0]["msg"]
    assert not leaks(password, process.log_text())
