"""The lab is real: a pinned kube-apiserver with RBAC, a controller manager, two TLS registries."""
from __future__ import annotations

import json
import stat

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from lab.binaries import kubernetes_version
from lab.images import DIGEST_REFERENCED, OCI_INDEX, RUNNABLE_SEEDS, RUNNABLE_VANISHING, SEED_IMAGES, VANISHING
from lab.lab import COMPONENTS
from lab.node import NODE_NAME, NODE_TAINT, PAUSE_REFERENCE
from lab.waiting import wait_for


def test_apiserver_reports_the_pinned_version(lab):
    result = lab.kubectl("get", "--raw", "/version")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gitVersion"] == kubernetes_version()


def test_admin_can_list_its_permissions(lab):
    result = lab.kubectl("auth", "can-i", "--list")
    assert result.returncode == 0, result.stderr
    assert "*.*" in result.stdout


def test_rbac_is_enforced_for_the_limited_identity(lab, kube, namespace):
    limited = client.AppsV1Api(_client_for(lab.limited_kubeconfig))
    with pytest.raises(ApiException) as refused:
        limited.list_namespaced_deployment(namespace)
    assert refused.value.status == 403

    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="read-deployments"),
        rules=[client.V1PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["get", "list"])],
    ))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="read-deployments"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-deployments"),
        subjects=[client.RbacV1Subject(kind="User", name="lab-limited", api_group="rbac.authorization.k8s.io")],
    ))
    # The authorizer learns of new bindings through a watch: allow it a moment.
    wait_for(lambda: _allowed(lambda: limited.list_namespaced_deployment(namespace)), "the new RoleBinding to apply")
    with pytest.raises(ApiException) as refused:
        limited.delete_collection_namespaced_deployment(namespace)
    assert refused.value.status == 403
    can_i = lab.kubectl("auth", "can-i", "patch", "deployments", "-n", namespace, kubeconfig=lab.limited_kubeconfig)
    assert can_i.stdout.strip() == "no"


def test_controller_manager_reconciles_deployments(lab, kube, namespace):
    deployment = _deployment("web", lab.source_image("library/nginx:1.27"))
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment)
    wait_for(lambda: client.AppsV1Api(kube).list_namespaced_replica_set(namespace).items,
              "a ReplicaSet owned by the Deployment")


def test_source_registry_holds_the_seeded_images(lab):
    config = lab.config
    assert set(config.seeds) == {spec.ref_name for spec in SEED_IMAGES + RUNNABLE_SEEDS}
    # The demo deletes these tags upstream on purpose; pushing them again restores the same digests.
    vanishing = (VANISHING, RUNNABLE_VANISHING)
    assert lab.push_images(tuple(s for s in SEED_IMAGES + RUNNABLE_SEEDS if s.ref_name in vanishing)) == {
        name: config.seeds[name] for name in vanishing}
    for ref_name, digest in config.seeds.items():
        inspected = lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"docker://{lab.source_image(ref_name)}")
        manifest = json.loads(inspected)
        assert manifest["schemaVersion"] == 2
        assert lab.skopeo("inspect", "--format={{.Digest}}", f"--cert-dir={lab.certs_dir}",
                          f"docker://{lab.source_image(ref_name)}").strip() == digest
    nginx = json.loads(lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}",
                                  f"docker://{lab.source_image('library/nginx:1.27')}"))
    assert nginx["mediaType"] == OCI_INDEX
    assert {m["platform"]["architecture"] for m in nginx["manifests"]} == {"amd64", "arm64"}
    by_digest = lab.source_image(DIGEST_REFERENCED).rsplit(":", 1)[0] + "@" + config.seeds[DIGEST_REFERENCED]
    lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"docker://{by_digest}")


def test_backup_registry_requires_its_credentials(lab):
    with pytest.raises(RuntimeError, match="unauthorized|authentication required"):
        lab.skopeo("inspect", f"--cert-dir={lab.certs_dir}", "--no-creds",
                  f"docker://{lab.config.backup_registry}/anything:latest")
    assert stat.S_IMODE(lab.backup_authfile.stat().st_mode) == 0o600
    assert lab.backup_password() not in lab.backup_authfile.read_text()


def test_smoke_path_copy_verify_and_rewrite(lab, kube, namespace):
    """The product's job done by hand: back up a Deployment's image, then point it there."""
    apps = client.AppsV1Api(kube)
    source = lab.source_image("library/nginx:1.27")
    apps.create_namespaced_deployment(namespace, _deployment("web", source))

    backup = f"{lab.config.backup_registry}/smoke/{namespace}:nginx-1.27"
    lab.skopeo("copy", "--all", "--preserve-digests", f"--src-cert-dir={lab.certs_dir}",
               f"--dest-cert-dir={lab.certs_dir}", f"--dest-authfile={lab.backup_authfile}",
               f"docker://{source}", f"docker://{backup}")
    copied = lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
                        f"docker://{backup}")
    assert json.loads(copied)["mediaType"] == OCI_INDEX
    digest = lab.config.seeds["library/nginx:1.27"]
    repository = backup.rsplit(":", 1)[0]
    # The copy kept the source digest, so the backup is addressable by it.
    lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
               f"docker://{repository}@{digest}")
    pinned = f"{backup}@{digest}"

    apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": pinned}]}}}})
    stored = apps.read_namespaced_deployment("web", namespace)
    assert stored.spec.template.spec.containers[0].image == pinned


def _deployment(name: str, image: str) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main", image=image)]),
            ),
        ),
    )


def _allowed(call) -> bool:
    try:
        call()
    except ApiException as error:
        if error.status != 403:
            raise
        return False
    return True


def _client_for(kubeconfig):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


# -- the node ------------------------------------------------------------------------------------


def test_status_lists_every_component_running(lab):
    status = lab.status()
    assert list(status) == list(COMPONENTS)
    assert {"kube-scheduler", "containerd", "kubelet"} <= set(status)
    assert all(state.startswith("running (pid ") for state in status.values()), status


def test_the_node_is_ready_on_loopback_and_tainted(lab):
    node = json.loads(lab.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
    assert lab.node_ready()
    assert [{k: t[k] for k in ("key", "value", "effect")} for t in node["spec"]["taints"]] == [NODE_TAINT]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == kubernetes_version()
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.")
    assert PAUSE_REFERENCE in lab.node.images(), "the sandbox image is imported, never pulled"


def test_the_kubelet_and_the_scheduler_have_their_own_limited_identities(lab):
    def can_i(kubeconfig: str, *args: str) -> str:
        return lab.kubectl("auth", "can-i", *args, kubeconfig=lab.state / kubeconfig).stdout.split(" ", 1)[0].strip()

    assert can_i("kubeconfig-node", "get", f"nodes/{NODE_NAME}") == "yes"
    assert can_i("kubeconfig-node", "list", "secrets", "--all-namespaces") == "no"
    assert can_i("kubeconfig-node", "create", "deployments", "-n", "default") == "no"
    assert can_i("kubeconfig-scheduler", "create", "pods", "--subresource=binding", "-n", "default") == "yes"
    assert can_i("kubeconfig-scheduler", "get", "secrets", "-n", "default") == "no"
    # NodeRestriction: a node may not change another node.
    other = lab.kubectl("label", "node", NODE_NAME, "imageclone.io/touched=yes", "--overwrite",
                        kubeconfig=lab.state / "kubeconfig-node")
    assert other.returncode == 0, other.stderr  # its own labels: allowed
    assert lab.kubectl("label", "node", NODE_NAME, "imageclone.io/touched-", kubeconfig=lab.state / "kubeconfig-node"
                       ).returncode == 0
    forged = lab.kubectl("label", "node", NODE_NAME, "node-restriction.kubernetes.io/forged=yes",
                         kubeconfig=lab.state / "kubeconfig-node")
    assert forged.returncode != 0 and "is not allowed to modify labels" in forged.stderr, forged.stderr
