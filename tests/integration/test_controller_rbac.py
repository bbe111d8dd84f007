"""deploy/'s RBAC is sufficient (the controller converges with nothing but its service account token)
and minimal (what it must not do is refused)."""
from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from builders import manifest, pod_spec
from test_controller_harness import REPO, events_for, rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError, new_api_client
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import SECRET
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.waiting import wait_for

DEPLOY = REPO / "deploy"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
SA = "image-clone-controller"


def rbac_documents(namespace: str, suffix: str, files: list[Path]) -> list[dict]:
    """deploy/'s RBAC objects, moved into ``namespace``; cluster-scoped names get ``suffix``."""
    documents = []
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document["kind"] not in RBAC_KINDS:
                continue
            metadata = document["metadata"]
            if document["kind"].startswith("Cluster"):
                metadata["name"] = f"{metadata['name']}-{suffix}"
            else:
                metadata["namespace"] = namespace
            if document["kind"] == "ClusterRoleBinding":
                document["roleRef"]["name"] = f"{document['roleRef']['name']}-{suffix}"
            for subject in document.get("subjects") or ():
                subject["namespace"] = namespace
            documents.append(document)
    return documents


def apply(lab, documents: list[dict]) -> None:
    result = subprocess.run([f"{lab.config.bin_dir}/kubectl", f"--kubeconfig={lab.kubeconfig}", "apply", "-f", "-"],
                            input=yaml.safe_dump_all(documents), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def can_i(lab, namespace: str, *args: str) -> bool:
    result = lab.kubectl("auth", "can-i", *args, f"--as=system:serviceaccount:{namespace}:{SA}")
    return result.stdout.strip() == "yes"


def token_kubeconfig(lab, kube, namespace: str, path: Path) -> Path:
    """A kubeconfig holding a fresh token for the service account, from the TokenRequest API."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=[], expiration_seconds=3600))
    token = client.CoreV1Api(kube).create_namespaced_service_account_token(SA, namespace, request).status.token
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": lab.config.apiserver_url,
                                                 "certificate-authority": str(lab.ca_cert())}}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": SA, "context": {"cluster": "lab", "user": SA, "namespace": namespace}}],
        "current-context": SA,
    }))
    path.chmod(0o600)
    return path


@pytest.fixture
def service_account(lab, namespace):
    """deploy/'s ServiceAccount, ClusterRoles, ClusterRoleBinding and leader-election Role in ``namespace``."""
    suffix = uuid.uuid4().hex[:6]
    documents = rbac_documents(namespace, suffix, sorted(DEPLOY.glob("*.yaml")))
    assert {d["kind"] for d in documents} == RBAC_KINDS
    apply(lab, documents)
    yield suffix
    for document in documents:
        if document["kind"].startswith("Cluster"):
            lab.kubectl("delete", document["kind"].lower(), document["metadata"]["name"], "--ignore-not-found")
    for document in rbac_documents(namespace, suffix, [DEPLOY / "optional" / "pull-secret-binding.yaml"]):
        lab.kubectl("delete", "clusterrolebinding", document["metadata"]["name"], "--ignore-not-found")


def test_the_service_account_can_do_its_job_and_nothing_more(lab, kube, namespace, tmp_path, service_account):
    # Allowed: exactly what reconciling and leader election need.
    for verb in ("get", "list", "watch", "patch"):
        for resource in ("deployments.apps", "daemonsets.apps", "statefulsets.apps", "cronjobs.batch",
                         "replicationcontrollers"):
            assert can_i(lab, namespace, verb, resource, "--all-namespaces"), (verb, resource)
    assert can_i(lab, namespace, "create", "events", "-n", "default")
    # The workloads' pull Secrets and ServiceAccounts, by name (--usePullSecrets): never listed or watched.
    for resource in ("secrets", "serviceaccounts"):
        assert can_i(lab, namespace, "get", resource, "--all-namespaces"), resource
    assert can_i(lab, namespace, "create", "leases.coordination.k8s.io", "-n", namespace)
    assert can_i(lab, namespace, "update", "leases.coordination.k8s.io/image-clone-controller", "-n", namespace)
    # Refused: deleting, creating or replacing workloads, secrets, pods, other leases.
    for args in (("delete", "deployments.apps"), ("create", "deployments.apps"), ("update", "deployments.apps"),
                 ("create", "pods"), ("delete", "pods"), ("list", "secrets"), ("watch", "secrets"),
                 ("list", "serviceaccounts"), ("update", "secrets"),
                 ("create", "secrets"), ("patch", "jobs.batch"), ("list", "pods"), ("delete", "events")):
        assert not can_i(lab, namespace, *args, "-n", namespace), args
    assert not can_i(lab, namespace, "update", "leases.coordination.k8s.io/someone-else", "-n", namespace)
    assert not can_i(lab, namespace, "create", "leases.coordination.k8s.io", "-n", "default")

    kubeconfig = token_kubeconfig(lab, kube, namespace, tmp_path / "sa-kubeconfig")
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    admin.create(deployment, namespace, manifest("Deployment", "app", pod_spec(lab, "Deployment")))
    admin.create(KINDS["CronJob"], namespace, manifest("CronJob", "nightly", pod_spec(lab, "CronJob")))
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                           lease_id="image-clone-controller", kubeconfig=kubeconfig) as process:
        process.wait_leader_ready()
        wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(deployment, namespace, "app")),
                 "the Deployment rewritten with the service account's token")
        wait_for(lambda: rewritten_to(process.repository, "CronJob",
                                      admin.get(KINDS["CronJob"], namespace, "nightly")), "the CronJob rewritten")
        wait_for(lambda: any(e["reason"] == "Rewritten" for e in events_for(lab, namespace, "app")), "an Event")
        # The API server's refusal reads "403 Forbidden"; digests and resourceVersions may hold "403" too.
        assert not [line for line in process.log_lines() if "forbidden" in str(line).lower()]

    # The same token, used directly: the API server refuses what the role does not grant.
    as_controller = KubeApi(new_api_client({"kubeconfig": str(kubeconfig)}))
    with pytest.raises(KubeApiError) as denied:
        as_controller.delete(KINDS["Deployment"], namespace, "app")
    assert denied.value.forbidden
    with pytest.raises(KubeApiError) as refused:
        as_controller.list(SECRET, namespace)
    assert refused.value.forbidden
    with pytest.raises(KubeApiError) as refused:
        as_controller.create(KINDS["Pod"], namespace, manifest("Pod", "sneaky", pod_spec(lab, "Pod")))
    assert refused.value.forbidden


def test_the_optional_pull_secret_role_is_what_pull_secret_needs(lab, kube, namespace, tmp_path, service_account):
    assert not can_i(lab, namespace, "update", "secrets/imageclone-backup-pull", "-n", namespace)
    apply(lab, rbac_documents(namespace, service_account, [DEPLOY / "optional" / "pull-secret-binding.yaml"]))
    assert can_i(lab, namespace, "get", "secrets/imageclone-backup-pull", "-n", namespace)
    assert can_i(lab, namespace, "update", "secrets/imageclone-backup-pull", "-n", namespace)
    assert not can_i(lab, namespace, "update", "secrets/someone-elses", "-n", namespace)
    assert can_i(lab, namespace, "create", "secrets", "-n", namespace)
    assert not can_i(lab, namespace, "delete", "secrets", "-n", namespace)
    assert not can_i(lab, namespace, "list", "secrets", "-n", namespace)

    kubeconfig = token_kubeconfig(lab, kube, namespace, tmp_path / "sa-kubeconfig")
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    admin.create(deployment, namespace, manifest("Deployment", "app", pod_spec(lab, "Deployment")))
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                           lease_id="image-clone-controller", kubeconfig=kubeconfig,
                           args=["--pullSecret=imageclone-backup-pull"]) as process:
        process.wait_leader_ready()
        stored = wait_for(lambda: (obj := admin.get(deployment, namespace, "app"))
                          and rewritten_to(process.repository, "Deployment", obj) and obj, "rewrite")
    assert {"name": "imageclone-backup-pull"} in stored["spec"]["template"]["spec"]["imagePullSecrets"]
    secret = admin.get(SECRET, namespace, "imageclone-backup-pull")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
