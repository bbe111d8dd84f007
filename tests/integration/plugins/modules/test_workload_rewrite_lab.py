"""workload_rewrite in-process against the lab: verification, all-or-nothing rewrites, check and diff mode,
reverts, and waiting for rollouts."""
from __future__ import annotations

import base64
import json
import logging

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.migration import REWRITE_CONCURRENCY
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import SECRET
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from ansible_collections.imageclone.backup.plugins.modules import image_backup, workload_rewrite
from lab.lab import BACKUP_USER
from lab.workloads import CONTAINER_SECTIONS, pod_spec_of

NGINX, REDIS, BUSYBOX = "library/nginx:1.27", "library/redis:7.2", "library/busybox:1.36"


@pytest.fixture
def backed_up(run_module, lab, backup_args):
    """The seeded images the default workloads use, backed up into this test's repository."""
    run = run_module(image_backup, {**backup_args, "images": [lab.source_image(i) for i in (NGINX, REDIS, BUSYBOX)]})
    assert not run.failed
    return {entry["source"]: entry["backup"] for entry in run.result["images"]}


@pytest.fixture
def args(connection_args, backup_args, namespace):
    return {**connection_args, **backup_args, "namespaces": [namespace]}


def images_of(admin, kind, namespace, name) -> dict[str, str]:
    obj = admin.get(KINDS[kind], namespace, name)
    spec = pod_spec_of(kind, obj)
    images = {f"{section}/{c['name']}": c["image"] for section in CONTAINER_SECTIONS for c in spec.get(section, [])}
    return images | {"annotation": obj["metadata"].get("annotations", {}).get(ORIGINAL_IMAGES)}


def by_key(run) -> dict[str, dict]:
    return {report["key"]: report for report in run.result["workloads"]}


# -- options -------------------------------------------------------------------------------------


def test_state_must_be_rewritten_or_reverted(run_module, args):
    run = run_module(workload_rewrite, {**args, "state": "restored"})
    assert run.failed and "state" in run.result["msg"] and "rewritten, reverted" in run.result["msg"]


@pytest.mark.parametrize("entry, message", [
    ({"kind": "Deployment", "namespace": "shop"}, "workloads entry 1 (kind='Deployment', namespace='shop', name=None) "
                                                  "needs a non-empty name"),
    ({"kind": "Deploy", "namespace": "shop", "name": "web"}, "unknown kind 'Deploy'"),
    ("Deployment/shop/web", "Elements value for option 'workloads' is of type str"),
])
def test_bad_workload_entries_are_named(run_module, args, entry, message):
    run = run_module(workload_rewrite, {**args, "workloads": [entry]})
    assert run.failed and message in run.result["msg"]


def test_wait_timeout_has_a_floor(run_module, args):
    run = run_module(workload_rewrite, {**args, "wait_timeout": -1})
    assert run.failed and run.result["msg"] == "wait_timeout must be at least 0, got -1"


def test_a_pull_secret_needs_a_login(run_module, args, create):
    create("Deployment", "web")
    run = run_module(workload_rewrite, {**args, "backup_authfile": None, "pull_secret": "backup-pull"})
    assert run.failed and "a pull secret needs a username and password" in run.result["msg"]


# -- rewriting -------------------------------------------------------------------------------------


def test_check_mode_writes_nothing_and_reports_the_diff(run_module, lab, args, create, backed_up, admin, namespace):
    create("Deployment", "web")
    before = images_of(admin, "Deployment", namespace, "web")
    run = run_module(workload_rewrite, {**args, "_ansible_check_mode": True, "_ansible_diff": True})

    web = by_key(run)[f"Deployment/{namespace}/web"]
    assert run.result["changed"] is True and web["state"] == "rewritten"
    assert images_of(admin, "Deployment", namespace, "web") == before
    [diff] = run.result["diff"]
    assert diff["before_header"] == diff["after_header"] == f"Deployment/{namespace}/web"
    assert diff["before"]["containers"]["main"] == lab.source_image(NGINX)
    assert diff["after"]["containers"]["main"] == backed_up[lab.source_image(NGINX)]


def test_rewrites_all_verified_workloads_then_has_nothing_to_do(run_module, lab, args, create, backed_up, admin,
                                                                namespace):
    create("Deployment", "web")
    create("CronJob", "nightly")
    run = run_module(workload_rewrite, {**args, "_ansible_diff": True})

    assert not run.failed and run.result["changed"] is True
    web = by_key(run)[f"Deployment/{namespace}/web"]
    assert set(web) == {"key", "kind", "namespace", "name", "state", "reason", "managed_by", "changes", "pull_secret"}
    assert (web["kind"], web["name"], web["state"], web["reason"]) == ("Deployment", "web", "rewritten", None)
    assert {c["after"] for c in web["changes"]} == set(backed_up.values())
    stored = images_of(admin, "Deployment", namespace, "web")
    assert stored["containers/main"] == backed_up[lab.source_image(NGINX)]
    assert json.loads(stored["annotation"])["containers"]["main"] == lab.source_image(NGINX)
    assert run.result["summary"] == {"rewritten": 2, "unchanged": 0, "owned": 0, "blocked": 0, "failed": 0,
                                     "reverted": 0, "skipped": len(run.result["skipped_workloads"])}
    assert len(run.result["diff"]) == 2
    assert {image["state"] for image in run.result["images"]} == {"present"}

    again = run_module(workload_rewrite, {**args, "_ansible_diff": True})
    assert again.result["changed"] is False and again.result["diff"] == []
    assert {w["state"] for w in again.result["workloads"]} == {"unchanged"}


@pytest.mark.usefixtures("backed_up")
def test_verifies_the_backup_itself_and_blocks_what_is_not_there(run_module, lab, args, create, admin, namespace):
    create("Deployment", "web")
    create("Deployment", "db", main="library/postgres:16")  # never backed up
    before = images_of(admin, "Deployment", namespace, "db")
    run = run_module(workload_rewrite, args)

    reports = by_key(run)
    assert reports[f"Deployment/{namespace}/web"]["state"] == "rewritten"
    db = reports[f"Deployment/{namespace}/db"]
    assert db["state"] == "blocked" and "postgres:16" in db["reason"] and "not backed up" in db["reason"]
    assert db["changes"] == []
    assert images_of(admin, "Deployment", namespace, "db") == before, "all or nothing: the db is untouched"
    postgres = next(i for i in run.result["images"] if i["source"] == lab.source_image("library/postgres:16"))
    assert postgres["state"] == "missing", "verify-only: the module never copies"
    assert not run.failed, "blocked workloads do not fail the task by default"

    strict = run_module(workload_rewrite, {**args, "fail_on_blocked": True})
    assert strict.failed and strict.result["msg"].startswith("1 of 2 workload(s) blocked or failed: ")
    assert f"Deployment/{namespace}/db: blocked: " in strict.result["msg"]


@pytest.mark.usefixtures("backed_up")
def test_only_the_listed_workloads_are_touched(run_module, lab, args, create, admin, namespace):
    create("Deployment", "web")
    create("Deployment", "other")
    selection = [
        {"kind": "Deployment", "namespace": namespace, "name": "web", "ready": True, "images": []},  # extra keys ok
        {"kind": "Deployment", "namespace": namespace, "name": "ghost"},
        {"kind": "Deployment", "namespace": "kube-system", "name": "coredns"},
    ]
    run = run_module(workload_rewrite, {**args, "namespaces": None, "workloads": selection})

    reports = by_key(run)
    assert set(reports) == {f"Deployment/{namespace}/web", f"Deployment/{namespace}/ghost"}
    assert reports[f"Deployment/{namespace}/web"]["state"] == "rewritten"
    assert reports[f"Deployment/{namespace}/ghost"]["state"] == "failed"
    assert reports[f"Deployment/{namespace}/ghost"]["reason"].startswith("not found")
    assert run.result["skipped_workloads"] == [{"kind": "Deployment", "namespace": "kube-system", "name": "coredns",
                                                "reason": "namespace kube-system is always ignored"}]
    assert images_of(admin, "Deployment", namespace, "other")["containers/main"] == lab.source_image(NGINX)


@pytest.mark.usefixtures("backed_up")
def test_reverted_restores_the_original_images_exactly(run_module, lab, args, create, admin, namespace):
    create("Deployment", "web")
    create("Pod", "single")
    workloads = (("Deployment", "web"), ("Pod", "single"))
    originals = {name: images_of(admin, kind, namespace, name) for kind, name in workloads}
    assert run_module(workload_rewrite, args).result["summary"]["rewritten"] == 2

    checked = run_module(workload_rewrite, {**args, "state": "reverted", "_ansible_check_mode": True})
    assert checked.result["summary"]["reverted"] == 2
    assert images_of(admin, "Deployment", namespace, "web") != originals["web"], "check mode reverted nothing"

    run = run_module(workload_rewrite, {**args, "state": "reverted", "_ansible_diff": True})
    assert run.result["changed"] is True and run.result["summary"]["reverted"] == 2
    assert run.result["images"] == []
    for kind, name in workloads:
        assert images_of(admin, kind, namespace, name) == originals[name]
    web_diff = next(d for d in run.result["diff"] if d["before_header"] == f"Deployment/{namespace}/web")
    assert web_diff["after"]["containers"]["main"] == lab.source_image(NGINX)

    again = run_module(workload_rewrite, {**args, "state": "reverted"})
    assert again.result["changed"] is False and again.result["summary"]["unchanged"] == 2


# -- waiting ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("backed_up")
def test_waits_for_rollouts(run_module, args, create):
    # No replicas: done once observed. Waiting for pods to become Ready on the lab's node is
    # proven in tests/integration/test_node_e2e.py; these pods would stay Pending.
    create("Deployment", "web", replicas=0)
    create("StatefulSet", "db")
    run = run_module(workload_rewrite, {**args, "wait": True, "wait_timeout": 60})
    assert not run.failed and run.result["summary"]["rewritten"] == 2, [
        (report["key"], report["state"], report.get("reason")) for report in run.result["workloads"]]


@pytest.mark.usefixtures("backed_up")
def test_a_rollout_that_never_finishes_fails_after_the_timeout(run_module, args, create, namespace):
    create("Deployment", "web", paused=True)  # a paused Deployment never rolls out
    run = run_module(workload_rewrite, {**args, "wait": True, "wait_timeout": 2})

    assert run.failed and run.result["changed"] is True
    assert run.result["msg"].startswith(f"rollouts not complete after 2s: Deployment/{namespace}/web: ")
    assert by_key(run)[f"Deployment/{namespace}/web"]["state"] == "rewritten", "the rewrite itself stands"


@pytest.mark.usefixtures("backed_up")
def test_check_mode_never_waits(run_module, args, create):
    create("Deployment", "web", paused=True)
    run = run_module(workload_rewrite, {**args, "wait": True, "wait_timeout": 0, "_ansible_check_mode": True})
    assert not run.failed and run.result["changed"] is True


# -- secrets -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("backed_up")
def test_pull_secret_and_password_stay_out_of_every_output(run_module, lab, args, create, admin, namespace):
    create("Deployment", "web")
    password = lab.backup_password()
    login = {**args, "backup_authfile": None, "backup_username": BACKUP_USER, "backup_password": password}
    run = run_module(workload_rewrite, {**login, "pull_secret": "backup-pull", "_ansible_diff": True})

    web = by_key(run)[f"Deployment/{namespace}/web"]
    assert web["state"] == "rewritten" and web["pull_secret"] == "backup-pull"
    assert run.result["diff"][0]["after"]["imagePullSecrets"] == ["backup-pull"]
    secret = admin.get(SECRET, namespace, "backup-pull")
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert lab.config.backup_registry in config["auths"], "the Secret holds the login"
    for form in (password, base64.b64encode(f"{BACKUP_USER}:{password}".encode()).decode(),
                 secret["data"][".dockerconfigjson"]):
        assert form not in run.output


@pytest.mark.usefixtures("backed_up")
def test_workloads_rewritten_at_once_share_one_pull_secret(run_module, lab, args, create, admin, namespace, caplog):
    # More workloads of one namespace than are rewritten at once: the first ones race to create the Secret.
    names = [f"web-{index}" for index in range(REWRITE_CONCURRENCY * 2 + 1)]
    for name in names:
        create("Deployment", name, replicas=0)
    login = {**args, "backup_authfile": None, "backup_username": BACKUP_USER, "backup_password": lab.backup_password()}
    with caplog.at_level(logging.WARNING):
        run = run_module(workload_rewrite, {**login, "pull_secret": "backup-pull"})

    assert not run.failed and run.result["summary"]["rewritten"] == len(names), [
        (report["key"], report["state"], report.get("reason")) for report in run.result["workloads"]]
    assert [report["name"] for report in run.result["workloads"]] == sorted(names), "in discovery order"
    for name in names:
        spec = pod_spec_of("Deployment", admin.get(KINDS["Deployment"], namespace, name))
        assert spec["imagePullSecrets"] == [{"name": "backup-pull"}]
        assert spec["containers"][0]["image"].startswith(lab.config.backup_registry)
    assert admin.get(SECRET, namespace, "backup-pull")["type"] == "kubernetes.io/dockerconfigjson"
    assert not [record.getMessage() for record in caplog.records if "pool is full" in record.getMessage()]
