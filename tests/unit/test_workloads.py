"""Workload kinds, image extraction and discovery rules, on plain objects and a fake API."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    KINDS,
    SKIP_ANNOTATION,
    ContainerImage,
    Kind,
    Skipped,
    discover,
    skip_reason,
    workload_from_object,
)

POD_SPEC = {
    "initContainers": [{"name": "init", "image": "busybox:1.36"}],
    "containers": [
        {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
        {"name": "cache", "image": "quay.io/acme/redis@sha256:" + "a" * 64},
    ],
    "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}],
    "imagePullSecrets": [{"name": "regcred"}],
}
EXPECTED_IMAGES = (
    ContainerImage("initContainers", "init", "busybox:1.36"),
    ContainerImage("containers", "app", "nginx:1.27"),
    ContainerImage("containers", "cache", "quay.io/acme/redis@sha256:" + "a" * 64),
    ContainerImage("ephemeralContainers", "debug", "busybox:1.36"),
)
# Written out per kind rather than built from pod_spec_path, so the paths are really tested.
SPECS: dict[str, dict[str, Any]] = {
    "Deployment": {"template": {"spec": POD_SPEC}},
    "DaemonSet": {"template": {"spec": POD_SPEC}},
    "StatefulSet": {"template": {"spec": POD_SPEC}},
    "ReplicaSet": {"template": {"spec": POD_SPEC}},
    "ReplicationController": {"template": {"spec": POD_SPEC}},
    "Job": {"template": {"spec": POD_SPEC}},
    "CronJob": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": POD_SPEC}}}},
    "Pod": POD_SPEC,
}


def manifest(
    kind: str = "Deployment",
    name: str = "web",
    namespace: str = "shop",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "7"}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    if owners:
        metadata["ownerReferences"] = owners
    return {"metadata": metadata, "spec": SPECS[kind] if spec is None else spec}


def owner(kind: str, name: str, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": controller}


def test_every_workload_kind_is_known():
    assert set(KINDS) == {"Deployment", "DaemonSet", "StatefulSet", "CronJob", "ReplicationController", "Job",
                          "ReplicaSet", "Pod"}
    assert KINDS["CronJob"].pod_spec_path == ("spec", "jobTemplate", "spec", "template", "spec")
    assert KINDS["Pod"].pod_spec_path == ("spec",)
    assert [kind.name for kind in KINDS.values() if kind.template_immutable] == ["Job"]


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_images_are_read_from_each_kinds_pod_spec(kind):
    workload = workload_from_object(KINDS[kind], manifest(kind))
    assert workload.images == EXPECTED_IMAGES
    assert workload.problems == ()
    assert workload.pull_secrets == ("regcred",)
    assert workload.key == f"{kind}/shop/web"


def test_metadata_is_carried_over():
    obj = manifest(labels={"app": "web"}, annotations={"note": "x"})
    workload = workload_from_object(KINDS["Deployment"], obj)
    assert (workload.namespace, workload.name, workload.uid, workload.resource_version) == (
        "shop",
        "web",
        "uid-web",
        "7",
    )
    assert workload.labels == {"app": "web"}
    assert workload.annotations == {"note": "x"}
    assert workload.raw is obj


def test_images_are_parsed_once_with_their_reference():
    image = workload_from_object(KINDS["Deployment"], manifest()).images[1]
    assert str(image.reference) == "docker.io/library/nginx:1.27"
    assert image.problem is None


def test_only_the_controller_owner_counts():
    obj = manifest("ReplicaSet", owners=[owner("Thing", "other", controller=False), owner("Deployment", "web")])
    assert workload_from_object(KINDS["ReplicaSet"], obj).owner == "Deployment/web"
    assert (
        workload_from_object(KINDS["ReplicaSet"], manifest("ReplicaSet", owners=[owner("Thing", "x", False)])).owner
        is None
    )


HELM_LABELS = {"app.kubernetes.io/instance": "web", "app.kubernetes.io/managed-by": "Helm"}


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        ({}, {"argocd.argoproj.io/tracking-id": "app:apps/Deployment:shop/web"}, "argocd"),
        ({"argocd.argoproj.io/instance": "web"}, {}, "argocd"),
        ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}, "flux"),
        ({"app": "web"}, {"note": "argocd.argoproj.io/tracking-id"}, None),
        # What helm install writes: Helm's labels and its release annotations. Not Argo CD.
        (HELM_LABELS, {"meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": "shop"}, "helm"),
        # A chart applied by hand (helm template | kubectl apply): Helm's labels only.
        (HELM_LABELS, {}, "helm"),
        # The recommended label alone (most public manifests): nobody in particular.
        ({"app.kubernetes.io/instance": "web", "app.kubernetes.io/name": "shop"}, {}, None),
        # A chart Argo CD rendered and tracks by annotation: Argo CD puts it back, not Helm.
        (HELM_LABELS, {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}, "argocd"),
        # Flux's helm-controller installs with Helm's SDK: Helm's markers and Flux's labels.
        ({**HELM_LABELS, "helm.toolkit.fluxcd.io/name": "web"}, {"meta.helm.sh/release-name": "web"}, "flux"),
    ],
)
def test_gitops_managers_are_detected(labels, annotations, expected):
    obj = manifest(labels=labels, annotations=annotations)
    assert workload_from_object(KINDS["Deployment"], obj).managed_by == expected


@pytest.mark.parametrize(
    ("container", "problem"),
    [
        ({"name": "app", "image": ""}, "containers 'app': image is empty or missing"),
        ({"name": "app"}, "containers 'app': image is empty or missing"),
        ({"name": "app", "image": 42}, "containers 'app': image is empty or missing"),
        ({"name": "app", "image": "Nginx:1.27"}, "containers 'app': invalid image reference 'Nginx:1.27'"),
        ({"name": "app", "image": "nginx:1.27 "}, "containers 'app': invalid image reference 'nginx:1.27 '"),
        ({"image": "nginx:1.27"}, "containers: a container has no name"),
    ],
)
def test_bad_images_are_reported_on_the_workload_not_raised(container, problem):
    obj = manifest(spec={"template": {"spec": {"containers": [container, {"name": "ok", "image": "nginx"}]}}})
    workload = workload_from_object(KINDS["Deployment"], obj)
    assert len(workload.problems) == 1
    assert workload.problems[0].startswith(problem)
    assert workload.images[0].reference is None
    assert workload.images[1].reference is not None


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"metadata": None, "spec": None},
        {"metadata": {"name": "web", "labels": "nope", "ownerReferences": "nope"}, "spec": {"template": []}},
        {
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": "nope", "imagePullSecrets": [1, {}]}}},
        },
        {"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [None, "x"]}}}},
    ],
)
def test_malformed_objects_never_crash_extraction(obj):
    workload = workload_from_object(KINDS["Deployment"], obj)
    assert workload.pull_secrets == ()
    assert workload.owner is None
    assert all(isinstance(problem, str) for problem in workload.problems)


def test_a_missing_pod_spec_is_a_problem():
    workload = workload_from_object(KINDS["CronJob"], manifest("CronJob", spec={"schedule": "@daily"}))
    assert workload.images == ()
    assert workload.problems == ("no pod spec at spec.jobTemplate.spec.template.spec",)


@pytest.mark.parametrize(
    ("obj", "kind", "reason"),
    [
        (manifest(namespace="kube-system"), "Deployment", "namespace kube-system is always ignored"),
        (manifest(namespace="legacy"), "Deployment", "namespace legacy is ignored"),
        (manifest(annotations={SKIP_ANNOTATION: "true"}), "Deployment", f"opted out with annotation {SKIP_ANNOTATION}"),
        (
            manifest(annotations={SKIP_ANNOTATION: " True "}),
            "Deployment",
            f"opted out with annotation {SKIP_ANNOTATION}",
        ),
        (manifest(annotations={SKIP_ANNOTATION: "false"}), "Deployment", None),
        (
            manifest("ReplicaSet", owners=[owner("Deployment", "web")]),
            "ReplicaSet",
            "controlled by Deployment/web, which is handled instead",
        ),
        (
            manifest("Job", owners=[owner("CronJob", "nightly")]),
            "Job",
            "controlled by CronJob/nightly, which is handled instead",
        ),
        (
            manifest("Pod", owners=[owner("ReplicaSet", "web-1")]),
            "Pod",
            "controlled by ReplicaSet/web-1, which is handled instead",
        ),
        # Owners the engine does not rewrite: the workload is processed (backed up), its rewrite left to them.
        (manifest("Pod", owners=[owner("Node", "node-1")]), "Pod", None),
        (manifest("ReplicaSet", owners=[owner("Rollout", "web")]), "ReplicaSet", None),
        (manifest("Deployment", owners=[owner("Database", "db")]), "Deployment", None),
        (manifest("ReplicaSet", owners=[owner("Deployment", "web", controller=False)]), "ReplicaSet", None),
        (manifest(labels={"kustomize.toolkit.fluxcd.io/name": "apps"}), "Deployment", None),
    ],
)
def test_skip_rules(obj, kind, reason):
    assert skip_reason(workload_from_object(KINDS[kind], obj), {"legacy"}) == reason


def test_gitops_workloads_are_skipped_only_when_asked():
    workload = workload_from_object(KINDS["Deployment"], manifest(labels={"helm.toolkit.fluxcd.io/name": "web"}))
    assert skip_reason(workload) is None
    assert skip_reason(workload, skip_gitops=True) == "managed by flux (skip_gitops)"


def test_a_helm_release_is_reported_but_not_skipped_as_gitops():
    obj = manifest(labels=HELM_LABELS, annotations={"meta.helm.sh/release-name": "web"})
    workload = workload_from_object(KINDS["Deployment"], obj)
    assert workload.managed_by == "helm" and skip_reason(workload, skip_gitops=True) is None


class FakeApi:
    """Serves LISTs from a fixed set of objects and records each call."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, str | None]] = []

    def list(self, kind: Kind, namespace: str | None = None, label_selector: str | None = None):
        self.calls.append((kind.name, namespace))
        items = [obj for obj in self.objects.get(kind.name, []) if namespace in (None, obj["metadata"]["namespace"])]
        return items, "100"


CLUSTER = {
    "Deployment": [
        manifest(name="web", namespace="shop"),
        manifest(name="dns", namespace="kube-system"),
        manifest(name="old", namespace="legacy"),
        manifest(name="quiet", namespace="shop", annotations={SKIP_ANNOTATION: "true"}),
        manifest(name="synced", namespace="shop", labels={"argocd.argoproj.io/instance": "shop"}),
    ],
    "ReplicaSet": [
        manifest("ReplicaSet", name="web-1", namespace="shop", owners=[owner("Deployment", "web")]),
        manifest("ReplicaSet", name="bare", namespace="blog"),
    ],
    "Pod": [manifest("Pod", name="web-1-x", namespace="shop", owners=[owner("ReplicaSet", "web-1")])],
}


def test_discovery_lists_each_kind_once_cluster_wide():
    api = FakeApi(CLUSTER)
    result = discover(api, ignore_namespaces=["legacy"])
    assert api.calls == [(kind, None) for kind in KINDS]
    assert [w.key for w in result.workloads] == [
        "Deployment/shop/web",
        "Deployment/shop/synced",
        "ReplicaSet/blog/bare",
    ]
    assert result.workloads[1].managed_by == "argocd"
    assert {(s.kind, s.namespace, s.name): s.reason for s in result.skipped} == {
        ("Deployment", "kube-system", "dns"): "namespace kube-system is always ignored",
        ("Deployment", "legacy", "old"): "namespace legacy is ignored",
        ("Deployment", "shop", "quiet"): f"opted out with annotation {SKIP_ANNOTATION}",
        ("ReplicaSet", "shop", "web-1"): "controlled by Deployment/web, which is handled instead",
        ("Pod", "shop", "web-1-x"): "controlled by ReplicaSet/web-1, which is handled instead",
    }


def test_discovery_reads_only_the_selected_workloads_and_still_says_why_one_is_left_alone():
    api = FakeApi(CLUSTER)
    only = {("Deployment", "shop", "synced"), ("Deployment", "shop", "quiet"), ("Deployment", "nowhere", "ghost")}
    result = discover(api, [KINDS["Deployment"]], only=only)
    assert api.calls == [("Deployment", None)], "still one cluster-wide LIST"
    assert [w.key for w in result.workloads] == ["Deployment/shop/synced"]
    assert result.skipped == (Skipped("Deployment", "shop", "quiet", f"opted out with annotation {SKIP_ANNOTATION}"),)


def test_discovery_can_skip_gitops_workloads():
    result = discover(FakeApi(CLUSTER), [KINDS["Deployment"]], ignore_namespaces=["legacy"], skip_gitops=True)
    assert [w.key for w in result.workloads] == ["Deployment/shop/web"]
    assert Skipped("Deployment", "shop", "synced", "managed by argocd (skip_gitops)") in result.skipped


def test_named_namespaces_are_listed_each_once_and_ignored_ones_never():
    api = FakeApi(CLUSTER)
    kinds = [KINDS["Deployment"], KINDS["ReplicaSet"]]
    result = discover(
        api, kinds, namespaces=["shop", "kube-system", "blog", "shop", "legacy"], ignore_namespaces=["legacy"]
    )
    assert api.calls == [("Deployment", "shop"), ("Deployment", "blog"), ("ReplicaSet", "shop"), ("ReplicaSet", "blog")]
    assert [w.key for w in result.workloads] == [
        "Deployment/shop/web",
        "Deployment/shop/synced",
        "ReplicaSet/blog/bare",
    ]
    assert result.skipped[:2] == (
        Skipped("Namespace", "kube-system", "kube-system", "namespace kube-system is always ignored"),
        Skipped("Namespace", "legacy", "legacy", "namespace legacy is ignored"),
    )


def test_discovery_reports_bad_images_instead_of_failing():
    broken = manifest(
        name="broken", spec={"template": {"spec": {"containers": [{"name": "app", "image": "nginx::1.27"}]}}}
    )
    result = discover(FakeApi({"Deployment": [broken, manifest()]}), [KINDS["Deployment"]])
    assert [w.name for w in result.workloads] == ["broken", "web"]
    assert result.workloads[0].problems and result.workloads[1].problems == ()


def test_the_gitops_page_lists_exactly_the_markers_read():
    from pathlib import Path

    from ansible_collections.imageclone.backup.plugins.module_utils import workloads

    page = (Path(__file__).resolve().parents[2] / "docs" / "gitops.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2] for line in page.splitlines()
            if line.startswith("| `") and "`managed_by`" not in line}
    markers = {
        workloads.FLUX: workloads.FLUX_LABELS,
        workloads.ARGOCD: (*workloads.ARGOCD_ANNOTATIONS, *workloads.ARGOCD_LABELS),
        workloads.HELM: (*workloads.HELM_ANNOTATIONS, *(f"{k}: {v}" for k, v in workloads.HELM_LABELS.items())),
    }
    assert set(rows) == set(markers)
    for manager, read in markers.items():
        assert sorted(re.findall(r"`([^`]+)`", rows[manager])) == sorted(read), manager


@pytest.mark.parametrize("kind, owners, left_to", [
    ("StatefulSet", [owner("Prometheus", "k8s")], "Prometheus/k8s"),
    ("ReplicaSet", [owner("Rollout", "web")], "Rollout/web"),
    ("Pod", [owner("Node", "node-1")], "Node/node-1"),
    ("Job", [owner("Workflow", "nightly")], "Workflow/nightly"),
    ("ReplicaSet", [owner("Deployment", "web")], None),  # skipped: its Deployment is rewritten instead
    ("Deployment", [owner("Database", "db", controller=False)], None),  # not a controller: no owner at all
    ("Deployment", [], None),
])
def test_a_workload_whose_owner_the_engine_cannot_rewrite_is_left_to_that_owner(kind, owners, left_to):
    assert workload_from_object(KINDS[kind], manifest(kind, owners=owners)).left_to_owner == left_to

