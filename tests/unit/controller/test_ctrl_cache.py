"""The informer cache keeps only what reconciling needs, and says whether that changed."""
from __future__ import annotations

import json

from ansible_collections.imageclone.backup.plugins.module_utils.pullcredentials import service_account_name
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    KINDS,
    projection,
    skip_reason,
    workload_from_object,
)
from imageclone_controller.cache import Store


def deployment(**overrides):
    obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "41", "generation": 3,
            "labels": {"app": "web", "argocd.argoproj.io/instance": "shop"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x" * 20_000,
                            "imageclone.io/original-images": '{"containers":{"app":"nginx:1.27"}}',
                            "imageclone.io/skip": "false", "team": "a"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "x", "controller": False}],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}] * 20,
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["true"]}],
                     "containers": [{"name": "app", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}],
                                     "resources": {"limits": {"memory": "1Gi"}}}],
                     "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}],
                     "imagePullSecrets": [{"name": "team-cred"}], "serviceAccountName": "shop-sa",
                     "volumes": [{"name": "v", "emptyDir": {}}]}}},
        "status": {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}] * 5},
    }
    obj.update(overrides)
    return obj


def test_the_projection_reads_as_the_same_workload():
    kind = KINDS["Deployment"]
    full, slim = workload_from_object(kind, deployment()), workload_from_object(kind, projection(kind, deployment()))
    for attribute in ("key", "uid", "labels", "images", "pull_secrets", "owner", "managed_by", "problems"):
        assert getattr(slim, attribute) == getattr(full, attribute), attribute
    assert slim.annotations == {key: value for key, value in full.annotations.items()
                                if key.startswith("imageclone.io/")}
    assert skip_reason(slim) == skip_reason(full)
    assert service_account_name(slim) == service_account_name(full) == "shop-sa"


def test_the_projection_is_small():
    kind = KINDS["Deployment"]
    store = Store(kind)
    key, entry = store.encode(deployment())
    assert key == "Deployment/shop/web"
    assert len(entry.body) < 700 < len(json.dumps(deployment())) / 20
    assert b"last-applied" not in entry.body and b"managedFields" not in entry.body and b"status" not in entry.body
    assert entry.object()["metadata"]["resourceVersion"] == "41"


def test_status_only_updates_are_not_changes_but_images_and_annotations_are():
    store = Store(KINDS["Deployment"])
    assert store.upsert(deployment()) == ("Deployment/shop/web", True)
    newer = deployment(status={"replicas": 2})
    newer["metadata"]["resourceVersion"] = "42"
    assert store.upsert(newer)[1] is False
    assert store.get("Deployment/shop/web").resource_version == "42"  # the patch precondition stays fresh
    rolled = deployment()
    rolled["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    assert store.upsert(rolled)[1] is True
    opted_out = deployment()
    opted_out["metadata"]["annotations"]["imageclone.io/skip"] = "true"
    assert store.upsert(opted_out)[1] is True


def test_relist_reports_new_changed_and_gone_keys():
    store = Store(KINDS["Deployment"])
    store.upsert(deployment())
    other = deployment()
    other["metadata"] = {**other["metadata"], "name": "api"}
    entries = dict([store.encode(other)])
    changed, gone = store.replace(entries)
    assert changed == ["Deployment/shop/api"] and gone == ["Deployment/shop/web"]
    assert store.keys() == ["Deployment/shop/api"]


def test_cronjob_pod_spec_path_and_malformed_objects():
    kind = KINDS["CronJob"]
    cron = {"metadata": {"name": "c", "namespace": "n"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "m", "image": "x:1"}]}}}}}}
    slim = projection(kind, cron)
    assert slim["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] == [{"name": "m", "image": "x:1"}]
    broken = projection(kind, {"metadata": {"name": "b", "namespace": "n"}, "spec": "nonsense"})
    assert workload_from_object(kind, broken).problems  # the engine still sees what is wrong
