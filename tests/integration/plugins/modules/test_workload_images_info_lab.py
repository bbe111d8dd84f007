"""workload_images_info in-process against the lab: what it lists, what it looks up, and what it never does."""
from __future__ import annotations

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from ansible_collections.imageclone.backup.plugins.modules import image_backup, workload_images_info

NGINX, REDIS, BUSYBOX = "library/nginx:1.27", "library/redis:7.2", "library/busybox:1.36"


def test_backup_registry_is_required(run_module, connection_args):
    run = run_module(workload_images_info, connection_args)
    assert run.failed and "missing required arguments: backup_registry" in run.result["msg"]


def test_unknown_kinds_are_refused_by_name(run_module, connection_args, backup_args):
    run = run_module(workload_images_info, {**connection_args, **backup_args, "kinds": ["Deployment", "Cronjob"]})
    assert run.failed and "kinds" in run.result["msg"] and "Cronjob" in run.result["msg"]


def test_an_absent_kubeconfig_is_a_clear_error(run_module, backup_args, tmp_path):
    run = run_module(workload_images_info, {**backup_args, "kubeconfig": str(tmp_path / "nope")})
    assert run.failed and run.result["msg"].startswith("could not load the Kubernetes configuration")


def test_lists_workloads_with_image_states_and_rewrites(run_module, lab, namespace, create, backup_args,
                                                        connection_args):
    run_module(image_backup, {**backup_args, "images": [lab.source_image(i) for i in (NGINX, REDIS, BUSYBOX)]})
    create("Deployment", "web")
    create("StatefulSet", "db", side="library/nginx:no-such-tag")
    create("Pod", "broken", main="Not A Reference")

    run = run_module(workload_images_info, {**connection_args, **backup_args, "namespaces": [namespace]})

    assert not run.failed and run.result["changed"] is False
    workloads = {w["key"]: w for w in run.result["workloads"]}
    assert set(workloads) == {f"Deployment/{namespace}/web", f"StatefulSet/{namespace}/db", f"Pod/{namespace}/broken"}

    web = workloads[f"Deployment/{namespace}/web"]
    assert set(web) == {"key", "kind", "namespace", "name", "managed_by", "problems", "images", "rewrite", "ready",
                        "blockers", "left_to_owner"}
    assert (web["kind"], web["namespace"], web["name"], web["ready"], web["blockers"], web["left_to_owner"]) == (
        "Deployment", namespace, "web", True, [], None)
    main = next(image for image in web["images"] if image["container"] == "main")
    digest = lab.config.seeds[NGINX]
    assert main == {"section": "containers", "container": "main", "image": lab.source_image(NGINX),
                    "backup": main["backup"], "digest": digest, "state": "present", "reason": None}
    assert main["backup"].startswith(backup_args["backup_registry"] + ":") and main["backup"].endswith("@" + digest)
    assert {(c["section"], c["container"]) for c in web["rewrite"]} == {
        ("initContainers", "init"), ("containers", "main"), ("containers", "side")}
    assert {c["before"]: c["after"] for c in web["rewrite"]}[lab.source_image(NGINX)] == main["backup"]

    db = workloads[f"StatefulSet/{namespace}/db"]
    side = next(image for image in db["images"] if image["container"] == "side")
    assert side["state"] == "missing" and side["digest"] is None and "does not exist" in side["reason"]
    assert side["backup"].startswith(backup_args["backup_registry"] + ":"), "where the backup would go"
    assert db["ready"] is False and len(db["blockers"]) == 1 and "no-such-tag" in db["blockers"][0]

    broken = workloads[f"Pod/{namespace}/broken"]
    bad = next(image for image in broken["images"] if image["container"] == "main")
    assert bad["state"] == "invalid" and bad["backup"] is None and "Not A Reference" in bad["reason"]
    assert broken["problems"] and broken["ready"] is False

    skipped = {(s["kind"], s["name"]) for s in run.result["skipped_workloads"]}
    assert all(kind in ("ReplicaSet", "Pod") for kind, _ in skipped)
    assert all(s["reason"].startswith("controlled by") for s in run.result["skipped_workloads"])
    assert set(run.result["images"]) == {lab.source_image(i) for i in (NGINX, REDIS, BUSYBOX)} | {
        lab.source_image("library/nginx:no-such-tag")}


def test_without_check_backups_no_registry_is_contacted(run_module, lab, namespace, create, backup_args,
                                                        connection_args):
    create("Deployment", "web")
    before = (len(lab.registry_requests("registry-source")), len(lab.registry_requests("registry-backup")))
    run = run_module(workload_images_info, {**connection_args, **backup_args, "namespaces": [namespace],
                                            "kinds": ["Deployment"], "check_backups": False})

    assert (len(lab.registry_requests("registry-source")), len(lab.registry_requests("registry-backup"))) == before
    [web] = run.result["workloads"]
    assert {image["state"] for image in web["images"]} == {"unchecked"}
    assert all(image["backup"].startswith(backup_args["backup_registry"] + ":") for image in web["images"])
    assert web["ready"] is False and web["rewrite"] == []
    assert run.result["skipped_workloads"] == [], "kinds narrow discovery: owned ReplicaSets are not even listed"


def test_check_mode_and_a_second_run_change_nothing(run_module, lab, namespace, create, backup_args,
                                                    connection_args, admin):
    create("Deployment", "web")
    mark = len(lab.registry_requests("registry-backup"))
    args = {**connection_args, **backup_args, "namespaces": [namespace]}
    normal = run_module(workload_images_info, args)
    checked = run_module(workload_images_info, {**args, "_ansible_check_mode": True})

    assert normal.result["changed"] is checked.result["changed"] is False
    assert normal.result["workloads"] == checked.result["workloads"]
    assert {r.method for r in lab.registry_requests("registry-backup")[mark:]} <= {"HEAD"}, "never a copy"
    stored = admin.get(KINDS["Deployment"], namespace, "web")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == lab.source_image(NGINX)


def test_the_kubeconfig_can_come_from_the_environment(run_module, lab, namespace, create, backup_args, monkeypatch):
    create("Deployment", "web")
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(lab.kubeconfig))
    run = run_module(workload_images_info, {**backup_args, "namespaces": [namespace], "kinds": ["Deployment"],
                                            "check_backups": False})
    assert not run.failed and [w["name"] for w in run.result["workloads"]] == ["web"]


def test_a_refused_token_is_never_shown(run_module, lab, backup_args):
    token = "imageclone-test-token-5f1d8e"
    run = run_module(workload_images_info, {
        **backup_args, "host": lab.config.apiserver_url, "api_key": token, "ca_cert": str(lab.ca_cert()),
        "check_backups": False,
    })
    assert run.failed and "Unauthorized (401)" in run.result["msg"]
    assert run.result["invocation"]["module_args"]["api_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert token not in run.output
