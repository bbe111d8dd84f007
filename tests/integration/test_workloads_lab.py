"""Discovery, plans, rewrites, reverts and pull secrets against the lab's real kube-apiserver."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
import yaml
from builders import BUSYBOX, JENKINS, NGINX, POSTGRES, REDIS, manifest, pod_spec
from kubernetes import client

from ansible_collections.imageclone.backup.plugins.module_utils.kube import (
    FIELD_MANAGER,
    KubeApi,
    KubeApiError,
    KubeConfigError,
    Resource,
    connection_options,
    new_api_client,
)
from ansible_collections.imageclone.backup.plugins.module_utils.naming import (
    NamingPolicy,
    backup_reference,
    is_backup_reference,
    pinned_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.plan import (
    BackupOutcome,
    images_to_back_up,
    plan_workload,
)
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import (
    DEFAULT_SECRET_NAME,
    SECRET,
    PullSecretError,
    ensure_pull_secret,
)
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import (
    ORIGINAL_IMAGES,
    RewriteError,
    apply,
    revert,
)
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    KINDS,
    Workload,
    discover,
)
from lab.images import DIGEST_REFERENCED, VANISHING
from lab.waiting import wait_for
from lab.workloads import pod_spec_of

# Fields the API server or controllers change on their own when a template changes.
VOLATILE_ANNOTATIONS = ("deployment.kubernetes.io/revision", "deprecated.daemonset.template.generation")
REWRITABLE_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "CronJob", "ReplicaSet", "Pod")
CONFIGMAP = Resource("ConfigMap", "v1", "configmaps")


# -- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def api(lab) -> KubeApi:
    """The engine's client, as the lab admin; its write counter starts at zero per test."""
    return lab.admin_api(FIELD_MANAGER)


@pytest.fixture
def policy(lab) -> NamingPolicy:
    return NamingPolicy("flat", f"{lab.config.backup_registry}/backup/registry")


@pytest.fixture
def second_namespace(kube) -> Iterable[str]:
    name = f"ignored-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"imageclone-test": "true"}))
    )
    yield name
    core.delete_namespace(name)


def create(admin: KubeApi, namespace: str, kind: str, name: str, spec: dict[str, Any], **extra) -> dict[str, Any]:
    return admin.create(KINDS[kind], namespace, manifest(kind, name, spec, **extra))


def outcomes(
    lab, policy: NamingPolicy, workloads: Iterable[Workload], missing: Iterable[str] = ()
) -> dict[str, BackupOutcome]:
    """Backup results as a backup run reports them: present at the seed digest, or missing; and, as
    ``Migration.back_up`` does for workloads already rewritten, each backup verified by its own name."""
    absent = {lab.source_image(ref_name) for ref_name in missing}
    results = {}
    for source, ref in images_to_back_up(workloads, policy).items():
        if source in absent:
            results[source] = BackupOutcome(source, None, None, "missing", "not found in the source registry")
            continue
        digest = ref.digest or lab.config.seeds[f"{ref.path}:{ref.tag}"]
        backup = backup_reference(ref, policy).without_digest()
        pinned = pinned_reference(backup, digest)
        results[source] = BackupOutcome(source, pinned, digest, "present")
        for written in (str(pinned), str(backup)):
            results[written] = BackupOutcome(written, str(pinned), digest, "present")
    for workload in workloads:
        for image in workload.images:
            ref = image.reference
            if ref is not None and ref.digest and is_backup_reference(ref, policy):
                results[image.image] = BackupOutcome(image.image, image.image, ref.digest, "present")
    return results


def expected_backup(lab, policy: NamingPolicy, ref_name: str) -> str:
    backup = backup_reference(parse_reference(lab.source_image(ref_name)), policy)
    return pinned_reference(backup, lab.config.seeds[ref_name])


def discover_one(api: KubeApi, namespace: str, kind: str, name: str) -> Workload:
    found = [w for w in discover(api, [KINDS[kind]], [namespace]).workloads if w.name == name]
    assert len(found) == 1, f"{kind}/{namespace}/{name} not discovered"
    return found[0]


def replanner(policy: NamingPolicy, results: dict[str, BackupOutcome], **options):
    return lambda workload: plan_workload(workload, policy, results, **options)


def stored_spec(api: KubeApi, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return pod_spec_of(kind, api.get(KINDS[kind], namespace, name))


def images_of(spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        section: {container["name"]: container["image"] for container in spec.get(section, [])}
        for section in ("initContainers", "containers")
    }


def stable(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without what the server and controllers change by themselves, nor our annotation."""
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    metadata = obj["metadata"]
    for key in ("resourceVersion", "generation", "managedFields"):
        metadata.pop(key, None)
    annotations = metadata.get("annotations", {})
    for key in (*VOLATILE_ANNOTATIONS, ORIGINAL_IMAGES):
        annotations.pop(key, None)
    if not annotations:
        metadata.pop("annotations", None)
    return obj


def with_images(kind: str, obj: dict[str, Any], images: dict[str, dict[str, str]]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    spec = pod_spec_of(kind, obj)
    for section, by_name in images.items():
        for container in spec.get(section, []):
            container["image"] = by_name.get(container["name"], container["image"])
    return obj


def assert_untouched(current: dict[str, Any], before: dict[str, Any]) -> None:
    """Nothing but controllers changed ``current``: same stable fields, no write by image-clone."""
    assert stable(current) == stable(before)
    assert FIELD_MANAGER not in {entry["manager"] for entry in current["metadata"].get("managedFields", [])}


# -- rewrite and revert, every kind ----------------------------------------------------


@pytest.mark.parametrize("kind", REWRITABLE_KINDS)
def test_each_kind_is_rewritten_pinned_then_reverted_exactly(lab, api, admin, policy, namespace, kind):
    create(admin, namespace, kind, "web", pod_spec(lab, kind))
    original = admin.get(KINDS[kind], namespace, "web")
    workload = discover_one(api, namespace, kind, "web")
    results = outcomes(lab, policy, [workload])
    assert set(images_to_back_up([workload], policy)) == {lab.source_image(ref) for ref in (NGINX, REDIS, BUSYBOX)}
    plan = plan_workload(workload, policy, results)
    assert plan.ready, plan.blockers

    result = apply(api, plan, replanner(policy, results))

    assert result.changed
    pinned = {
        "initContainers": {"init": expected_backup(lab, policy, BUSYBOX)},
        "containers": {"main": expected_backup(lab, policy, NGINX), "side": expected_backup(lab, policy, REDIS)},
    }
    originals = images_of(pod_spec_of(kind, original))
    assert result.diff() == {"before": originals, "after": pinned}
    stored = admin.get(KINDS[kind], namespace, "web")
    assert images_of(pod_spec_of(kind, stored)) == pinned
    assert json.loads(stored["metadata"]["annotations"][ORIGINAL_IMAGES]) == originals
    assert stable(stored) == stable(with_images(kind, original, pinned))

    # Converged: a second run plans nothing and sends nothing.
    writes = api.writes
    again = discover_one(api, namespace, kind, "web")
    assert plan_workload(again, policy, results).converged
    assert not apply(api, plan_workload(again, policy, results), replanner(policy, results)).changed
    assert api.writes == writes

    reverted = revert(api, again)
    assert reverted.changed and reverted.diff() == {"before": pinned, "after": originals}
    restored = admin.get(KINDS[kind], namespace, "web")
    assert stable(restored) == stable(original)
    assert ORIGINAL_IMAGES not in restored["metadata"].get("annotations", {})
    writes = api.writes
    assert not revert(api, discover_one(api, namespace, kind, "web")).changed
    assert api.writes == writes


def test_jobs_are_backed_up_but_their_immutable_template_is_left_alone(lab, api, admin, policy, namespace):
    create(admin, namespace, "Job", "migrate", pod_spec(lab, "Job"))
    job = discover_one(api, namespace, "Job", "migrate")
    results = outcomes(lab, policy, [job])
    assert len(images_to_back_up([job], policy)) == 3
    plan = plan_workload(job, policy, results)
    assert not plan.ready
    assert "Job pod templates are immutable" in plan.blockers[0] and job.key in plan.blockers[0]
    with pytest.raises(RewriteError, match="migrate is not ready"):
        apply(api, plan, replanner(policy, results))
    assert api.writes == 0


# -- all-or-nothing, scope and ownership -----------------------------------------------


def test_a_workload_with_a_missing_image_is_untouched_while_the_others_converge(lab, api, admin, policy, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    create(admin, namespace, "Deployment", "db", pod_spec(lab, "Deployment", main=POSTGRES))
    create(admin, namespace, "Deployment", "ci", pod_spec(lab, "Deployment", main=JENKINS, side=VANISHING))
    untouched = admin.get(KINDS["Deployment"], namespace, "ci")
    found = discover(api, [KINDS["Deployment"]], [namespace]).workloads
    results = outcomes(lab, policy, found, missing=[VANISHING])

    plans = {w.name: plan_workload(w, policy, results) for w in found}
    applied = {name: apply(api, plan, replanner(policy, results)) for name, plan in plans.items() if plan.ready}

    assert set(applied) == {"web", "db"} and all(result.changed for result in applied.values())
    assert plans["ci"].blockers == (
        f"containers 'side': image '{lab.source_image(VANISHING)}' is not backed up "
        "(missing: not found in the source registry)",
    )
    assert_untouched(admin.get(KINDS["Deployment"], namespace, "ci"), untouched)
    rediscovered = discover(api, [KINDS["Deployment"]], [namespace]).workloads
    assert {w.name: plan_workload(w, policy, results).converged for w in rediscovered} == {
        "ci": False,
        "db": True,
        "web": True,
    }


def test_kube_system_and_ignored_namespaces_are_never_touched(lab, api, admin, policy, namespace, second_namespace):
    name = f"imageclone-probe-{uuid.uuid4().hex[:6]}"
    create(admin, "kube-system", "Deployment", name, pod_spec(lab, "Deployment"))
    try:
        create(admin, second_namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
        create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
        protected = [
            admin.get(KINDS["Deployment"], ns, n) for ns, n in (("kube-system", name), (second_namespace, "web"))
        ]

        cluster = discover(api, [KINDS["Deployment"]], ignore_namespaces=[second_namespace])
        skipped = {(s.namespace, s.name): s.reason for s in cluster.skipped}
        assert skipped[("kube-system", name)] == "namespace kube-system is always ignored"
        assert skipped[(second_namespace, "web")] == f"namespace {second_namespace} is ignored"
        assert not any(w.namespace in ("kube-system", second_namespace) for w in cluster.workloads)

        named = discover(
            api,
            [KINDS["Deployment"]],
            ["kube-system", second_namespace, namespace],
            ignore_namespaces=[second_namespace],
        )
        assert [w.key for w in named.workloads] == [f"Deployment/{namespace}/web"]
        assert [(s.kind, s.name) for s in named.skipped] == [
            ("Namespace", "kube-system"),
            ("Namespace", second_namespace),
        ]

        mine = [w for w in cluster.workloads if w.namespace == namespace]
        results = outcomes(lab, policy, mine)
        for workload in mine:
            assert apply(api, plan_workload(workload, policy, results), replanner(policy, results)).changed
        for before in protected:
            assert_untouched(
                admin.get(KINDS["Deployment"], before["metadata"]["namespace"], before["metadata"]["name"]), before
            )
    finally:
        client.AppsV1Api(new_api_client({"kubeconfig": str(lab.kubeconfig)})).delete_namespaced_deployment(
            name, "kube-system"
        )


def test_replicasets_and_pods_owned_by_a_deployment_are_skipped(lab, api, admin, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    kinds = [KINDS["Deployment"], KINDS["ReplicaSet"], KINDS["Pod"]]

    def owned_objects_exist():
        result = discover(api, kinds, [namespace])
        return result if {s.kind for s in result.skipped} == {"ReplicaSet", "Pod"} else None

    result = wait_for(owned_objects_exist, "the Deployment's ReplicaSet and Pod")
    assert [w.key for w in result.workloads] == [f"Deployment/{namespace}/web"]
    replicaset = next(s for s in result.skipped if s.kind == "ReplicaSet")
    assert replicaset.reason == "controlled by Deployment/web, which is handled instead"
    pod = next(s for s in result.skipped if s.kind == "Pod")
    assert pod.reason == f"controlled by ReplicaSet/{replicaset.name}, which is handled instead"


def test_opted_out_and_gitops_workloads(lab, api, admin, namespace):
    create(
        admin,
        namespace,
        "Deployment",
        "argo",
        pod_spec(lab, "Deployment"),
        labels={"argocd.argoproj.io/instance": "shop"},
    )
    create(admin, namespace, "Deployment", "quiet", pod_spec(lab, "Deployment"))
    admin.patch(KINDS["Deployment"], namespace, "quiet", {"metadata": {"annotations": {"imageclone.io/skip": "true"}}})
    reported = discover(api, [KINDS["Deployment"]], [namespace])
    assert [(w.name, w.managed_by) for w in reported.workloads] == [("argo", "argocd")]
    assert [(s.name, s.reason) for s in reported.skipped] == [("quiet", "opted out with annotation imageclone.io/skip")]
    skipping = discover(api, [KINDS["Deployment"]], [namespace], skip_gitops=True)
    assert skipping.workloads == ()
    assert ("argo", "managed by argocd (skip_gitops)") in [(s.name, s.reason) for s in skipping.skipped]


# -- concurrency, pinning options, dry run, recorded originals ---------------------------


def test_a_conflict_is_retried_against_the_fresh_object(lab, api, admin, policy, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    stale = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [stale])
    admin.patch(KINDS["Deployment"], namespace, "web", {"metadata": {"labels": {"touched": "meanwhile"}}})
    replanned: list[Workload] = []

    def replan(workload: Workload):
        replanned.append(workload)
        return plan_workload(workload, policy, results)

    result = apply(api, plan_workload(stale, policy, results), replan)

    assert result.changed
    # Each refused patch costs one re-read and replan (controllers may add conflicts of their own).
    assert replanned and api.writes == len(replanned) + 1
    assert replanned[0].resource_version != stale.resource_version
    assert replanned[0].labels["touched"] == "meanwhile"
    stored = admin.get(KINDS["Deployment"], namespace, "web")
    assert stored["metadata"]["labels"]["touched"] == "meanwhile"
    assert images_of(stored_spec(admin, "Deployment", namespace, "web"))["containers"]["main"] == expected_backup(
        lab, policy, NGINX
    )


def test_conflicts_give_up_after_the_bounded_attempts(lab, api, admin, policy, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    workload = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [workload])
    counter = iter(range(100))

    def replan_after_someone_else_wrote(fresh: Workload):
        admin.patch(KINDS["Deployment"], namespace, "web", {"metadata": {"labels": {"busy": str(next(counter))}}})
        return plan_workload(fresh, policy, results)

    admin.patch(KINDS["Deployment"], namespace, "web", {"metadata": {"labels": {"busy": "start"}}})
    with pytest.raises(KubeApiError) as refused:
        apply(api, plan_workload(workload, policy, results), replan_after_someone_else_wrote, attempts=3)
    assert refused.value.conflict and f"Deployment {namespace}/web" in str(refused.value)
    assert api.writes == 3


def test_digest_referenced_sources_keep_their_digest_without_pinning(lab, api, admin, policy, namespace):
    by_digest = lab.source_image(DIGEST_REFERENCED).rsplit(":", 1)[0] + "@" + lab.config.seeds[DIGEST_REFERENCED]
    spec = pod_spec(lab, "Deployment")
    spec["containers"][1]["image"] = by_digest
    create(admin, namespace, "Deployment", "web", spec)
    workload = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [workload])

    apply(api, plan_workload(workload, policy, results, pin=False), replanner(policy, results, pin=False))

    images = images_of(stored_spec(admin, "Deployment", namespace, "web"))
    assert images["containers"]["main"] == expected_backup(lab, policy, NGINX).split("@")[0]
    assert images["containers"]["side"].endswith("@" + lab.config.seeds[DIGEST_REFERENCED])
    assert images["containers"]["side"].startswith(f"{lab.config.backup_registry}/backup/registry:")


def test_dry_run_validates_on_the_server_and_stores_nothing(lab, api, admin, policy, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    before = admin.get(KINDS["Deployment"], namespace, "web")
    workload = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [workload])

    result = apply(api, plan_workload(workload, policy, results), replanner(policy, results), dry_run=True)

    assert result.changed
    would_be = result.object["spec"]["template"]["spec"]["containers"][0]["image"]
    assert would_be == expected_backup(lab, policy, NGINX)
    after = admin.get(KINDS["Deployment"], namespace, "web")  # its controller may move status on meanwhile
    assert after["spec"] == before["spec"]
    assert ORIGINAL_IMAGES not in (after["metadata"].get("annotations") or {})


def test_a_container_changed_after_the_rewrite_records_its_new_original(lab, api, admin, policy, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    first = discover_one(api, namespace, "Deployment", "web")
    apply(api, plan_workload(first, policy, outcomes(lab, policy, [first])), replanner(policy, {}))
    # The owner upgrades one container to another public image.
    admin.patch(
        KINDS["Deployment"],
        namespace,
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": lab.source_image(POSTGRES)}]}}}},
    )
    upgraded = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [upgraded])
    plan = plan_workload(upgraded, policy, results)
    assert [(c.container, c.before) for c in plan.changes] == [("side", lab.source_image(POSTGRES))]

    apply(api, plan, replanner(policy, results))

    recorded = json.loads(admin.get(KINDS["Deployment"], namespace, "web")["metadata"]["annotations"][ORIGINAL_IMAGES])
    assert recorded == {
        "initContainers": {"init": lab.source_image(BUSYBOX)},
        "containers": {"main": lab.source_image(NGINX), "side": lab.source_image(POSTGRES)},
    }
    revert(api, discover_one(api, namespace, "Deployment", "web"))
    assert images_of(stored_spec(admin, "Deployment", namespace, "web")) == recorded


def test_an_unreadable_original_images_annotation_is_refused(lab, api, admin, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    admin.patch(KINDS["Deployment"], namespace, "web", {"metadata": {"annotations": {ORIGINAL_IMAGES: "{not json"}}})
    with pytest.raises(RewriteError, match=f"Deployment/{namespace}/web: annotation {ORIGINAL_IMAGES}"):
        revert(api, discover_one(api, namespace, "Deployment", "web"))
    assert api.writes == 0


# -- pull secrets ---------------------------------------------------------------------


def test_pull_secret_is_created_once_and_merged_into_the_same_patch(lab, api, admin, policy, namespace):
    spec = pod_spec(lab, "Deployment")
    spec["imagePullSecrets"] = [{"name": "team-registry"}]
    create(admin, namespace, "Deployment", "web", spec)
    registry, password = lab.config.backup_registry, lab.backup_password()

    assert ensure_pull_secret(api, namespace, registry, "imageclone", password) is True
    assert ensure_pull_secret(api, namespace, registry, "imageclone", password) is False
    assert api.writes == 1
    secret = admin.get(SECRET, namespace, DEFAULT_SECRET_NAME)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == [registry]
    assert config["auths"][registry]["password"] == password

    workload = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [workload])
    result = apply(
        api, plan_workload(workload, policy, results), replanner(policy, results), pull_secret=DEFAULT_SECRET_NAME
    )

    # One patch carried both the images and the pull secret.
    assert result.changes and result.pull_secret == DEFAULT_SECRET_NAME
    assert result.diff()["after"]["imagePullSecrets"] == ["team-registry", DEFAULT_SECRET_NAME]
    spec_after = stored_spec(admin, "Deployment", namespace, "web")
    assert spec_after["imagePullSecrets"] == [{"name": "team-registry"}, {"name": DEFAULT_SECRET_NAME}]
    writes = api.writes
    again = discover_one(api, namespace, "Deployment", "web")
    assert not apply(
        api, plan_workload(again, policy, results), replanner(policy, results), pull_secret=DEFAULT_SECRET_NAME
    ).changed
    assert api.writes == writes

    assert ensure_pull_secret(api, namespace, registry, "imageclone", "rotated") is True
    rotated = json.loads(
        base64.b64decode(admin.get(SECRET, namespace, DEFAULT_SECRET_NAME)["data"][".dockerconfigjson"])
    )
    assert rotated["auths"][registry]["password"] == "rotated"


def test_a_converged_workload_still_gets_a_missing_pull_secret(lab, api, admin, policy, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    first = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [first])
    apply(api, plan_workload(first, policy, results), replanner(policy, results))
    converged = discover_one(api, namespace, "Deployment", "web")
    result = apply(
        api, plan_workload(converged, policy, results), replanner(policy, results), pull_secret="backup-pull"
    )
    assert result.changed and result.changes == () and result.pull_secret == "backup-pull"
    stored = admin.get(KINDS["Deployment"], namespace, "web")
    assert stored["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "backup-pull"}]
    assert json.loads(stored["metadata"]["annotations"][ORIGINAL_IMAGES])["containers"]["main"] == lab.source_image(
        NGINX
    )


def test_a_foreign_secret_of_the_same_name_is_never_overwritten(lab, api, admin, namespace):
    admin.create(
        SECRET, namespace, {"metadata": {"name": DEFAULT_SECRET_NAME}, "type": "Opaque", "data": {"k": "dmFsdWU="}}
    )
    with pytest.raises(
        PullSecretError, match=f"Secret {namespace}/{DEFAULT_SECRET_NAME} exists and is not managed"
    ) as refused:
        ensure_pull_secret(api, namespace, lab.config.backup_registry, "imageclone", "hunter2-secret")
    assert "hunter2" not in str(refused.value)
    assert api.writes == 0


def test_a_bare_pods_pull_secrets_cannot_change_so_it_is_refused_before_writing(lab, api, admin, policy, namespace):
    create(admin, namespace, "Pod", "solo", pod_spec(lab, "Pod"))
    workload = discover_one(api, namespace, "Pod", "solo")
    results = outcomes(lab, policy, [workload])
    with pytest.raises(PullSecretError, match=f"Pod/{namespace}/solo: a Pod's imagePullSecrets cannot change"):
        apply(
            api, plan_workload(workload, policy, results), replanner(policy, results), pull_secret=DEFAULT_SECRET_NAME
        )
    assert api.writes == 0


# -- identity, errors and connection options ------------------------------------------


def test_the_limited_identity_gets_a_clear_403_naming_the_object(lab, api, admin, policy, namespace):
    create(admin, namespace, "Deployment", "web", pod_spec(lab, "Deployment"))
    workload = discover_one(api, namespace, "Deployment", "web")
    results = outcomes(lab, policy, [workload])
    limited = KubeApi(new_api_client({"kubeconfig": str(lab.limited_kubeconfig)}))

    with pytest.raises(KubeApiError) as refused:
        apply(limited, plan_workload(workload, policy, results), replanner(policy, results))
    error = refused.value
    assert error.forbidden and error.status == 403 and error.reason == "Forbidden"
    assert str(error).startswith(f"patch Deployment {namespace}/web: Forbidden (403): ")
    assert 'User "lab-limited" cannot patch resource "deployments"' in str(error)

    with pytest.raises(KubeApiError, match=f"list deployments in namespace {namespace}: Forbidden"):
        discover(limited, [KINDS["Deployment"]], [namespace])
    with pytest.raises(
        KubeApiError, match=f"get Secret {namespace}/{DEFAULT_SECRET_NAME}: Forbidden"
    ) as secret_refused:
        ensure_pull_secret(limited, namespace, lab.config.backup_registry, "imageclone", lab.backup_password())
    assert lab.backup_password() not in str(secret_refused.value)


def test_errors_never_carry_the_token(lab):
    token = "s3cr3t-t0ken-" + uuid.uuid4().hex
    api = KubeApi(new_api_client({"host": lab.config.apiserver_url, "api_key": token, "ca_cert": str(lab.ca_cert())}))
    with pytest.raises(KubeApiError) as refused:
        api.list(KINDS["Deployment"], "default")
    assert refused.value.status == 401
    assert token not in str(refused.value) and token not in repr(refused.value.args)


def test_a_server_that_is_not_an_apiserver_gives_a_typed_error(lab):
    registry = KubeApi(
        new_api_client({"host": f"https://{lab.config.source_registry}", "api_key": "x", "ca_cert": str(lab.ca_cert())})
    )
    with pytest.raises(KubeApiError) as refused:
        registry.list(KINDS["Deployment"])
    assert refused.value.not_found and str(refused.value).startswith("list deployments in all namespaces: ")


def test_missing_objects_and_invalid_patches_are_typed(lab, api, admin, namespace):
    with pytest.raises(KubeApiError) as missing:
        api.get(KINDS["Deployment"], namespace, "absent")
    assert missing.value.not_found and str(missing.value).startswith(
        f"get Deployment {namespace}/absent: NotFound (404)"
    )
    create(admin, namespace, "Job", "once", pod_spec(lab, "Job"))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}}}
    with pytest.raises(KubeApiError) as invalid:
        api.patch(KINDS["Job"], namespace, "once", patch)
    # The server dumps the whole template between the subject and the verdict; both ends are kept.
    message = str(invalid.value)
    assert invalid.value.invalid and 'Job.batch "once" is invalid' in message and message.endswith("field is immutable")
    assert len(message) < 600


def test_lists_are_paged_and_filtered(lab, admin, namespace):
    paged = lab.admin_api(page_size=2)
    for index in range(5):
        paged.create(CONFIGMAP, namespace, {"metadata": {"name": f"cm-{index}", "labels": {"batch": "one"}}})
    requests = []
    call_api = paged.api_client.call_api

    def counted(path, *args, **kwargs):
        requests.append(path)
        return call_api(path, *args, **kwargs)

    paged.api_client.call_api = counted

    items, resource_version = paged.list(CONFIGMAP, namespace, label_selector="batch=one")

    assert [item["metadata"]["name"] for item in items] == [f"cm-{index}" for index in range(5)]
    assert {(item["kind"], item["apiVersion"]) for item in items} == {("ConfigMap", "v1")}
    assert len(requests) == 3 and resource_version
    assert paged.writes == 5


def test_connection_options_follow_kubernetes_core(lab, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    environ = {"K8S_AUTH_KUBECONFIG": str(lab.kubeconfig), "K8S_AUTH_VERIFY_SSL": "no", "K8S_AUTH_SSL_CA_CERT": "/ca"}
    assert connection_options({"kubeconfig": None, "state": "present"}, environ) == {
        "kubeconfig": str(lab.kubeconfig),
        "validate_certs": False,
        "ca_cert": "/ca",
    }
    assert connection_options({"validate_certs": True}, {"K8S_AUTH_VALIDATE_CERTS": "false"}) == {
        "validate_certs": True
    }

    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(lab.kubeconfig))
    assert KubeApi(new_api_client()).get(Resource("Namespace", "v1", "namespaces", namespaced=False), None, "default")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_host_and_client_certificate_need_no_kubeconfig(lab):
    user = yaml.safe_load(lab.kubeconfig.read_text())["users"][0]["user"]
    options = {
        "host": lab.config.apiserver_url + "/",
        "client_cert": user["client-certificate"],
        "client_key": user["client-key"],
        "ca_cert": str(lab.ca_cert()),
    }
    assert KubeApi(new_api_client(options)).list(KINDS["Deployment"], "default")[1]
    unverified = {**options, "ca_cert": None, "validate_certs": False}
    assert KubeApi(new_api_client(unverified)).list(KINDS["Deployment"], "default")[1]


def test_bad_connection_options_raise_a_config_error(lab):
    with pytest.raises(KubeConfigError, match="could not load the Kubernetes configuration"):
        new_api_client({"kubeconfig": str(lab.kubeconfig), "context": "no-such-context"})
    with pytest.raises(KubeConfigError):
        new_api_client({"kubeconfig": str(lab.state / "missing-kubeconfig")})
