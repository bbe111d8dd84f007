"""Who else manages a workload, read from real objects in the lab: a Helm release is not Argo CD, and
skip_gitops leaves only Argo CD's and Flux's workloads alone."""
from __future__ import annotations

import uuid

from builders import manifest, pod_spec

from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions
from ansible_collections.imageclone.backup.plugins.module_utils.migration import Migration, Scope
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS

HELM_RELEASE = ({"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "Helm"},
                {"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "shop"})
MARKED = {
    "helm-release": HELM_RELEASE,
    "argocd-app": ({"app.kubernetes.io/instance": "shop"},
                   {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/argocd-app"}),
    "flux-app": ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}),
    "recommended-labels": ({"app.kubernetes.io/instance": "shop", "app.kubernetes.io/name": "web"}, {}),
}


def test_a_helm_release_is_reported_as_helm_and_skip_gitops_leaves_only_argocd_and_flux_alone(lab, admin,
                                                                                                 namespace):
    for name, (labels, marks) in MARKED.items():
        body = manifest("Deployment", name, pod_spec(lab, "Deployment"), labels=labels)
        body["metadata"]["annotations"] = marks
        admin.create(KINDS["Deployment"], namespace, body)
    options = BackupOptions.from_mapping({
        "backup_registry": f"{lab.config.backup_registry}/gitops/{uuid.uuid4().hex[:8]}",
        "backup_authfile": str(lab.backup_authfile), "certs_dir": str(lab.certs_dir)})
    engine = Migration.from_options({"kubeconfig": str(lab.kubeconfig)}, options,
                                    Scope(kinds=(KINDS["Deployment"],), namespaces=(namespace,), skip_gitops=True))

    report = engine.run()

    found = {report.key.rsplit("/", 1)[1]: report for report in report.workloads}
    assert {name: found[name].managed_by for name in found} == {"helm-release": "helm", "recommended-labels": None}
    assert {found[name].state for name in found} == {"rewritten"}
    assert {skipped.name: skipped.reason for skipped in report.skipped} == {
        "argocd-app": "managed by argocd (skip_gitops)", "flux-app": "managed by flux (skip_gitops)"}
