"""Secrets under the controller, while it really copies: no command line of its process tree ever
carries the backup password (or its base64 ``user:password``), its auth files are 0600 in 0700
directories while they exist and gone afterwards, and neither logs, Events nor /metrics show the
password, also when the registry refuses it.

Extends ``test_controller_secrets.py`` (logs/Events/metrics, one look at the controller's own
cmdline) and ``test_backup_lab.py`` (skopeo argv and auth file modes for the engine in-process);
``test_faults_registry.py::test_backup_registry_crash_mid_playbook_*`` does the same for the
playbook and its modules with ``-vvv`` on a failing run.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from builders import BUSYBOX, JENKINS, NGINX, POSTGRES, REDIS
from faults_support import (
    SECRET,
    AuthDirWatch,
    ProcessWatch,
    auth_file_problems,
    events,
    leaked,
    secret_forms,
    simple_deployment,
    small_images,
    workload_images,
)

from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import DATA_KEY
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.lab import BACKUP_USER
from lab.waiting import wait_for

DEPLOYMENT = KINDS["Deployment"]


def private_dirs(tmp_path: Path) -> tuple[Path, Path]:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir(mode=0o700)
    return home, tmp


def test_the_controller_never_exposes_the_password_while_it_copies(lab, namespace, tmp_path):
    password = lab.backup_password()
    forms = secret_forms(password)
    home, tmp = private_dirs(tmp_path)
    admin = lab.admin_api()
    fresh = small_images(lab, 4, size=4 * 1024 * 1024)
    seeds = [lab.source_image(image) for image in (NGINX, REDIS, BUSYBOX, POSTGRES, JENKINS)]
    for number, image in enumerate(fresh + seeds):
        admin.create(DEPLOYMENT, namespace, simple_deployment(f"app-{number}", {"main": image}))
    admin.create(DEPLOYMENT, namespace, simple_deployment("missing", {"main": lab.source_image("library/nginx:nope")}))
    env = {"HOME": str(home), "TMPDIR": str(tmp), "IMAGECLONE_BACKUP_USERNAME": BACKUP_USER,
           "IMAGECLONE_BACKUP_PASSWORD": password}
    controller = ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace, env=env,
                                   authfile=False,  # skopeo: the copier with command lines and auth files
                                   args=["--pullSecret=backup-pull", "--workers=4", "--copier=skopeo"])
    with ProcessWatch(lambda: [controller.pid] if controller.process else [], forms) as watch, \
            AuthDirWatch(tmp) as authdirs, controller:
        controller.wait_leader_ready()
        wait_for(lambda: len([group for group in workload_images(admin, namespace).values()
                              if group[0].startswith(controller.repository)]) == len(fresh + seeds),
                 "every good workload rewritten", timeout=60)
        wait_for(lambda: {"Rewritten", "BackupFailed"} <= {e["reason"] for e in events(admin, namespace)},
                 "both kinds of Event")
        _, metrics = controller.get("/metrics")
    assert watch.scans > 10 and len(watch.copies()) >= len(fresh + seeds), (watch.scans, len(watch.copies()))
    assert watch.offenders == [], watch.offenders  # command lines of the tree, skopeo's environments
    assert watch.environments_checked >= 1
    assert auth_file_problems(watch, authdirs) == []
    visible = "\n".join([controller.log_text(), json.dumps(events(admin, namespace)), metrics])
    assert leaked(visible, forms) == []
    # (It was in play: the pull Secret it wrote holds it, which is that Secret's purpose.)
    secret = admin.get(SECRET, namespace, "backup-pull")
    assert password in base64.b64decode(secret["data"][DATA_KEY]).decode()


def test_a_refused_password_is_never_shown_either(lab, namespace, tmp_path):
    """The registry answers 401 to every attempt: errors travel through logs and Events, never the password."""
    wrong = lab.backup_password() + "-wrong"
    forms = secret_forms(wrong)
    home, tmp = private_dirs(tmp_path)
    admin = lab.admin_api()
    admin.create(DEPLOYMENT, namespace, simple_deployment("app", {"main": lab.source_image(BUSYBOX)}))
    env = {"HOME": str(home), "TMPDIR": str(tmp), "IMAGECLONE_BACKUP_USERNAME": BACKUP_USER,
           "IMAGECLONE_BACKUP_PASSWORD": wrong}
    controller = ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace, env=env,
                                   authfile=False)
    with ProcessWatch(lambda: [controller.pid] if controller.process else [], forms) as watch, controller:
        controller.wait_leader_ready()
        warned = wait_for(lambda: [e for e in events(admin, namespace, "app") if e["reason"] == "BackupFailed"],
                          "a BackupFailed event", timeout=60)
        wait_for(lambda: controller.metric("imageclone_reconcile_failures_total") >= 2, "a retry")
    assert "401" in warned[0]["message"] or "auth" in warned[0]["message"].lower(), warned[0]["message"]
    assert workload_images(admin, namespace)["Deployment/app"] == [lab.source_image(BUSYBOX)]
    assert watch.offenders == []
    assert leaked(controller.log_text() + json.dumps(events(admin, namespace)), forms) == []
    assert not list(tmp.iterdir())
