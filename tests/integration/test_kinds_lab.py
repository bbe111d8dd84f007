"""A kind the engine does not ship, described in the test alone: discovery, backup, rewrite and the generated
RBAC all follow its description, against the lab's API server and registries."""
from __future__ import annotations

import json
import uuid

import pytest
from builders import NGINX, pod_spec

from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.kinds import Kind, Resource
from ansible_collections.imageclone.backup.plugins.module_utils.kube import FIELD_MANAGER
from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo
from imageclone_controller.rbac import cluster_role

# PodTemplate is a real core API type with a pod spec at template.spec, and no controller of its own.
POD_TEMPLATE = Kind("PodTemplate", "v1", "podtemplates", pod_spec_path=("template", "spec"))
ACCOUNT = "kind-test"
SERVICE_ACCOUNT = Resource("ServiceAccount", "v1", "serviceaccounts")
CLUSTER_ROLE = Resource("ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDING = Resource("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings",
                                namespaced=False)


@pytest.fixture
def template(lab, admin, namespace) -> str:
    body = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "tpl"},
            **POD_TEMPLATE.at_pod_spec(pod_spec(lab, "PodTemplate"))}
    admin.create(POD_TEMPLATE, namespace, body)
    return "tpl"


@pytest.fixture
def role_for_the_new_kind(admin, namespace):
    """The generated ClusterRole for the new kind alone, bound to a service account of ``namespace``."""
    role = cluster_role([POD_TEMPLATE])
    role["metadata"]["name"] = name = f"image-clone-kind-test-{uuid.uuid4().hex[:6]}"
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}]}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}}
    admin.create(SERVICE_ACCOUNT, namespace, account)
    admin.create(CLUSTER_ROLE, None, role)
    admin.create(CLUSTER_ROLE_BINDING, None, binding)
    yield f"system:serviceaccount:{namespace}:{ACCOUNT}"
    admin.delete(CLUSTER_ROLE_BINDING, None, name)
    admin.delete(CLUSTER_ROLE, None, name)


def test_a_kind_described_in_a_test_is_discovered_backed_up_and_rewritten(lab, namespace, template):
    policy = NamingPolicy("flat", f"{lab.config.backup_registry}/kinds/{uuid.uuid4().hex[:10]}")
    store = CredentialStore.from_authfile(lab.backup_authfile)
    backups = BackupService(RegistryClient(store, certs_dir=lab.certs_dir), Skopeo(certs_dir=lab.certs_dir),
                            store, policy)
    api = lab.admin_api(FIELD_MANAGER)
    engine = Migration(api, backups, Scope(kinds=(POD_TEMPLATE,), namespaces=(namespace,)))

    found = engine.discover()
    assert [workload.key for workload in found.workloads] == [f"PodTemplate/{namespace}/{template}"]
    report = engine.run()
    assert [(r.key, r.state) for r in report.workloads] == [(f"PodTemplate/{namespace}/{template}", "rewritten")]
    assert report.summary()["images"]["copied"] == 3

    stored = api.get(POD_TEMPLATE, namespace, template)
    main = stored["template"]["spec"]["containers"][0]
    assert main["image"].startswith(policy.target + ":") and main["image"].endswith("@" + lab.config.seeds[NGINX])
    assert main["env"] == [{"name": "MODE", "value": "prod"}], "fields besides the image are kept"
    originals = json.loads(stored["metadata"]["annotations"][ORIGINAL_IMAGES])
    assert originals["containers"]["main"] == lab.source_image(NGINX)
    assert [r.state for r in engine.run().workloads] == ["unchanged"]


def test_the_generated_cluster_role_grants_the_new_kind_and_nothing_more(lab, namespace, role_for_the_new_kind):
    def can_i(*args: str) -> bool:
        return lab.kubectl("auth", "can-i", *args, f"--as={role_for_the_new_kind}").stdout.strip() == "yes"

    for verb in ("get", "list", "watch", "patch"):
        assert can_i(verb, "podtemplates", "--all-namespaces"), verb
    assert can_i("create", "events", "-n", namespace)
    for args in (("delete", "podtemplates"), ("create", "podtemplates"), ("update", "podtemplates"),
                 ("patch", "deployments.apps"), ("list", "pods"), ("list", "secrets")):
        assert not can_i(*args, "-n", namespace), args
