"""Whole passes of the engine against the lab: real copies, real rewrites, then nothing to do."""
from __future__ import annotations

import json
import uuid

import pytest
from builders import JENKINS, NGINX, POSTGRES, manifest, pod_spec

from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService, BackupSettings
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.kube import FIELD_MANAGER
from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import SECRET
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.workloads import pod_spec_of

REWRITTEN_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "CronJob", "ReplicationController", "ReplicaSet", "Pod")


@pytest.fixture
def policy(lab) -> NamingPolicy:
    return NamingPolicy("flat", f"{lab.config.backup_registry}/migration/{uuid.uuid4().hex[:10]}")


def migration(lab, policy, namespace, **settings) -> Migration:
    store = CredentialStore.from_authfile(lab.backup_authfile)
    backups = BackupService(RegistryClient(store, certs_dir=lab.certs_dir), Skopeo(certs_dir=lab.certs_dir),
                            store, policy, BackupSettings(**settings))
    api = lab.admin_api(FIELD_MANAGER)
    return Migration(api, backups, Scope(namespaces=(namespace,)))


@pytest.fixture
def cluster(lab, namespace) -> str:
    """Every kind in one namespace, plus a Deployment whose sidecar image does not exist upstream."""
    admin = lab.admin_api()
    for kind in (*REWRITTEN_KINDS, "Job"):
        admin.create(KINDS[kind], namespace, manifest(kind, kind.lower(), pod_spec(lab, kind)))
    broken = pod_spec(lab, "Deployment", main=POSTGRES, side="library/nginx:no-such-tag", init=JENKINS)
    admin.create(KINDS["Deployment"], namespace, manifest("Deployment", "broken", broken))
    return namespace


def by_key(report) -> dict[str, object]:
    return {r.key.split("/", 1)[1]: r for r in report.workloads}


def test_first_pass_copies_and_rewrites_every_kind_second_pass_does_nothing(lab, policy, cluster):
    first = migration(lab, policy, cluster).run()
    reports = by_key(first)

    for kind in REWRITTEN_KINDS:
        assert reports[f"{cluster}/{kind.lower()}"].state == "rewritten", reports[f"{cluster}/{kind.lower()}"]
    job = reports[f"{cluster}/job"]
    assert job.state == "blocked" and "immutable" in job.reason
    broken = reports[f"{cluster}/broken"]
    assert broken.state == "blocked" and "no-such-tag" in broken.reason
    images = first.summary()["images"]
    assert images["copied"] == 5 and images["missing"] == 1  # nginx redis busybox postgres jenkins; no-such-tag

    admin = lab.admin_api()
    for kind in REWRITTEN_KINDS:
        obj = admin.get(KINDS[kind], cluster, kind.lower())
        main = pod_spec_of(kind, obj)["containers"][0]["image"]
        assert main.startswith(policy.target + ":") and main.endswith("@" + lab.config.seeds[NGINX])
        originals = json.loads(obj["metadata"]["annotations"][ORIGINAL_IMAGES])
        assert originals["containers"]["main"] == lab.source_image(NGINX)
        assert originals["initContainers"]["init"] == lab.source_image("library/busybox:1.36")
    untouched = admin.get(KINDS["Deployment"], cluster, "broken")
    assert untouched["spec"]["template"]["spec"]["containers"][0]["image"] == lab.source_image(POSTGRES)
    assert ORIGINAL_IMAGES not in untouched["metadata"].get("annotations", {})

    mark = len(lab.registry_requests("registry-backup", policy.target_path))
    again = migration(lab, policy, cluster)
    second = again.run()
    assert again.api.writes == 0
    assert {r.state for r in second.workloads if r.key.split("/")[-1] not in ("job", "broken")} == {"unchanged"}
    assert second.summary()["images"]["copied"] == 0
    requests = lab.registry_requests("registry-backup", policy.target_path)[mark:]
    assert not [r for r in requests if r.method != "HEAD"], "a converged pass only HEADs the backup registry"


def test_check_mode_changes_nothing(lab, policy, cluster):
    mark = len(lab.registry_requests("registry-backup", policy.target_path))
    dry = migration(lab, policy, cluster, dry_run=True)
    report = dry.run()
    assert by_key(report)[f"{cluster}/deployment"].state == "rewritten"  # would be
    admin = lab.admin_api()
    stored = admin.get(KINDS["Deployment"], cluster, "deployment")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == lab.source_image(NGINX)
    assert all(r.method == "HEAD" for r in lab.registry_requests("registry-backup", policy.target_path)[mark:])


def test_a_lost_backup_is_restored_from_the_recorded_original(lab, policy, cluster):
    migration(lab, policy, cluster).run()
    admin = lab.admin_api()
    image = admin.get(KINDS["Deployment"], cluster, "deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    backup = parse_reference(image)
    lab.skopeo("delete", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
               f"docker://{backup.without_tag()}")  # pruned by someone
    # The Job still names the source image, whose backup would be copied by the normal path first.
    admin.delete(KINDS["Job"], cluster, "job")

    report = migration(lab, policy, cluster).run()
    assert report.images[image].state == "restored"
    lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
               f"docker://{backup.without_tag()}")


def test_a_deleted_pull_secret_is_recreated_after_forget(lab, policy, namespace):
    from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions

    options = BackupOptions.from_mapping({"backup_registry": policy.target, "backup_authfile": str(lab.backup_authfile),
                                          "certs_dir": str(lab.certs_dir)})
    admin = lab.admin_api()
    for name in ("first", "second"):
        admin.create(KINDS["Deployment"], namespace, manifest("Deployment", name, pod_spec(lab, "Deployment")))
    engine = Migration.from_options({"kubeconfig": str(lab.kubeconfig)}, options, Scope(namespaces=(namespace,)),
                   pull_secret_name="backup-pull")
    found = {w.name: w for w in engine.discover().workloads}
    outcomes = engine.back_up(found.values())

    assert engine.rewrite(found["first"], outcomes).state == "rewritten"
    admin.delete(SECRET, namespace, "backup-pull")
    engine.forget_pull_secrets()
    assert engine.rewrite(found["second"], outcomes).state == "rewritten"
    secret = admin.get(SECRET, namespace, "backup-pull")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"


def test_a_stale_copy_of_a_rewritten_workload_ends_unchanged_after_the_conflict(lab, policy, namespace):
    admin = lab.admin_api()
    admin.create(KINDS["Deployment"], namespace, manifest("Deployment", "web", pod_spec(lab, "Deployment")))
    engine = migration(lab, policy, namespace)
    [stale] = engine.discover().workloads
    assert engine.rewrite(stale, engine.back_up([stale])).state == "rewritten"

    # Like a controller whose cache still holds the object from before its own rewrite: the patch meets
    # a 409, and the re-read object runs backups this pass has not verified yet.
    again = migration(lab, policy, namespace)
    report = again.rewrite(stale, again.back_up([stale]))
    assert report.state == "unchanged", report.reason
