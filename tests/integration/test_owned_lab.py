"""Workloads another controller owns (a StatefulSet of a custom resource, a Pod of one): their images are
backed up and verified, the rewrite is left to the owner, and the playbook's summary and the controller's
Events name the owner to configure."""
from __future__ import annotations

import uuid

import pytest
from builders import NGINX, manifest, pod_spec
from test_controller_harness import events_for
from test_playbook_lab import run_playbook, variables

from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions
from ansible_collections.imageclone.backup.plugins.module_utils.kinds import Resource
from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError
from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.waiting import wait_for
from lab.workloads import container_images

GROUP = "lab.imageclone.io"
CRD = Resource("CustomResourceDefinition", "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)
WIDGET = Resource("Widget", f"{GROUP}/v1", "widgets")


@pytest.fixture(scope="module")
def widgets(lab):
    """A small CRD, as an operator would install one; removed with its objects at the end."""
    admin = lab.admin_api()
    name = f"{WIDGET.plural}.{GROUP}"
    try:
        admin.create(CRD, None, {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"plural": WIDGET.plural, "singular": "widget", "kind": WIDGET.name},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
    except KubeApiError as error:
        if not error.conflict:
            raise
    wait_for(lambda: _served(admin), "the Widget CRD served", timeout=30)
    yield WIDGET
    admin.delete(CRD, None, name)


def _served(admin) -> bool:
    try:
        admin.list(WIDGET)
        return True
    except KubeApiError:
        return False


def owned_by_a_widget(lab, admin, namespace) -> None:
    """A Widget "k8s" that owns a StatefulSet and a Pod, as an operator's objects own what it creates."""
    widget = admin.create(WIDGET, namespace, {"apiVersion": WIDGET.api_version, "kind": WIDGET.name,
                                              "metadata": {"name": "k8s"}, "spec": {"replicas": 0}})
    owner = [{"apiVersion": WIDGET.api_version, "kind": WIDGET.name, "name": "k8s",
              "uid": widget["metadata"]["uid"], "controller": True}]
    for kind, name in (("StatefulSet", "widget-k8s"), ("Pod", "widget-k8s-0")):
        body = manifest(kind, name, pod_spec(lab, kind))
        body["metadata"]["ownerReferences"] = owner
        admin.create(KINDS[kind], namespace, body)


def test_the_playbook_backs_up_owned_workloads_and_leaves_the_rewrite_to_their_owner(lab, admin, namespace,
                                                                                         widgets):
    owned_by_a_widget(lab, admin, namespace)
    admin.create(KINDS["Deployment"], namespace, manifest("Deployment", "web", pod_spec(lab, "Deployment")))
    before = {key: container_images(key[0], admin.get(KINDS[key[0]], namespace, key[1]))
              for key in (("StatefulSet", "widget-k8s"), ("Pod", "widget-k8s-0"))}
    extra = variables(lab, [namespace], f"owned/{uuid.uuid4().hex[:8]}")

    result = run_playbook(lab, "migrate", extra)

    assert "workloads: 3 (rewritten 1, unchanged 0, owned 2, blocked 0, failed 0)" in result.stdout, \
        result.stdout[-3000:]
    for kind, name in before:
        assert container_images(kind, admin.get(KINDS[kind], namespace, name)) == before[(kind, name)]
        line = next(line for line in result.stdout.splitlines() if f"owned: {kind}/{namespace}/{name}" in line)
        assert "owned by Widget/k8s: backed up, rewrite left to the owner; configure Widget/k8s to use" in line
        assert lab.source_image(NGINX) in line
    # The backups are really there: a fresh pass finds every image of the owned workloads present.
    engine = Migration.from_options({"kubeconfig": str(lab.kubeconfig)},
                                    BackupOptions.from_mapping(_backup_options(lab, extra)),
                                    Scope(namespaces=(namespace,)), copy=False)
    found = [w for w in engine.discover().workloads if w.left_to_owner == "Widget/k8s"]
    assert sorted(w.kind.name for w in found) == ["Pod", "StatefulSet"]
    assert {outcome.state for outcome in engine.back_up(found).values()} == {"present"}


def test_the_controller_backs_up_an_owned_statefulset_and_names_its_owner_in_an_event(lab, admin, namespace,
                                                                                       widgets, tmp_path):
    owned_by_a_widget(lab, admin, namespace)
    before = container_images("StatefulSet", admin.get(KINDS["StatefulSet"], namespace, "widget-k8s"))
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace) as controller:
        controller.wait_leader_ready()
        event = wait_for(lambda: next((e for e in events_for(lab, namespace, "widget-k8s")
                                       if e["reason"] == "LeftToOwner"), None), "a LeftToOwner event", timeout=60)
        assert event["type"] == "Normal" and "owned by Widget/k8s" in event["message"]
        assert controller.repository in event["message"], "the event says which backup to configure"
        assert controller.metric("imageclone_reconcile_total", result="owned") >= 1
    assert container_images("StatefulSet", admin.get(KINDS["StatefulSet"], namespace, "widget-k8s")) == before


def _backup_options(lab, extra: dict) -> dict:
    return {"backup_registry": extra["imageclone_backup_registry"], "backup_authfile": str(lab.backup_authfile),
            "certs_dir": str(lab.certs_dir)}
