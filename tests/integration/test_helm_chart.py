"""The Helm chart (charts/image-clone): it lints clean, deploy/ is exactly what it renders, what it renders
is accepted by the lab's API server whatever the values, and `helm install` brings the controller up
on the lab's node as `kubectl apply -k deploy/` does; `helm uninstall` leaves nothing behind."""
from __future__ import annotations

import subprocess
import uuid

import pytest
import yaml
from builders import manifest, pod_spec
from test_controller_harness import rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab import image_build, in_cluster
from lab.helm import CHART, DEPLOY, helm, rendered_deploy
from lab.pods import describe
from lab.waiting import wait_for


def test_the_chart_lints_clean():
    linted = helm("lint", "--strict", str(CHART), check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout, linted.stdout


def test_deploy_is_the_chart_rendered_with_its_defaults():
    rendered = rendered_deploy()
    on_disk = {str(path.relative_to(DEPLOY)): path.read_text() for path in DEPLOY.rglob("*.yaml")}
    assert set(on_disk) == set(rendered), "deploy/ holds files the chart does not render, or lacks some"
    drifted = [name for name, text in rendered.items() if on_disk[name] != text]
    assert not drifted, f"deploy/ drifted from charts/image-clone in {drifted}: run `python -m lab.helm render-deploy`"


# Values that switch on every optional part the lab's API server knows (the ServiceMonitor needs the
# Prometheus Operator's CRDs, so it is only rendered).
VARIANTS = {
    "defaults": {},
    "created credentials, pull Secret, nested naming": {
        "credentials": {"existingSecret": "", "username": "robot", "password": "not-a-real-secret"},
        "pullSecret": {"name": "team-pull", "bind": True}, "backup": {"naming": "nested", "caConfigMap": "cas"},
        "ignoreNamespaces": ["monitoring"], "namespaces": ["shop"], "usePullSecrets": False,
        "imagePullSecrets": ["registry-login"], "replicas": 3, "logLevel": "debug",
        "extraArgs": ["--parallel=4"], "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    },
    "host network, metrics on a free port": {"hostNetwork": True, "metrics": {"port": 0},
                                             "image": {"digest": "sha256:" + "a" * 64}},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_what_the_chart_renders_is_accepted_by_the_api_server(lab, namespace, tmp_path, variant):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VARIANTS[variant]))
    rendered = helm("template", "ic", str(CHART), f"--namespace={namespace}", f"--values={values}").stdout
    applied = subprocess.run([f"{lab.config.bin_dir}/kubectl", f"--kubeconfig={lab.kubeconfig}", "apply",
                              "--dry-run=server", "-f", "-"], input=rendered, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    kinds = {document["kind"] for document in yaml.safe_load_all(rendered) if document}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role"} <= kinds
    if "credentials" in VARIANTS[variant]:
        assert "Secret" in kinds and "not-a-real-secret" not in rendered  # base64 in the Secret, nowhere else


def test_the_service_monitor_is_rendered_when_asked():
    rendered = helm("template", "ic", str(CHART), "--set=metrics.serviceMonitor.enabled=true").stdout
    monitors = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1 and monitors[0]["spec"]["endpoints"][0]["port"] == "metrics"


def test_the_chart_refuses_to_render_without_credentials():
    failed = helm("template", "ic", str(CHART), "--set=credentials.existingSecret=", check=False)
    assert failed.returncode != 0 and "credentials" in failed.stderr


def test_helm_install_brings_the_controller_up_and_uninstall_removes_it(lab, admin, tmp_path):
    release, namespace = f"ic-{uuid.uuid4().hex[:4]}", f"helm-{uuid.uuid4().hex[:6]}"
    watched = f"{namespace}-apps"
    for name in (namespace, watched):
        assert lab.kubectl("create", "namespace", name).returncode == 0
    in_cluster.create_prerequisites(lab, namespace)
    repository = in_cluster.backup_repository(lab, "helm")
    values = in_cluster.helm_values(lab, image_build.push(lab), watched, repository)
    lease = f"{release}-controller"
    try:
        in_cluster.helm_install(lab, release, namespace, values, tmp_path)
        running = in_cluster.wait_for_replicas(lab, namespace, 2)
        holder = wait_for(lambda: in_cluster.lease_holder(lab, namespace, lease), "a replica to take the Lease", 60,
                          explain=lambda: describe(lab, namespace))
        assert holder in {pod["metadata"]["name"] for pod in running}
        deployment = KINDS["Deployment"]
        admin.create(deployment, watched, manifest("Deployment", "app", pod_spec(lab, "Deployment")))
        wait_for(lambda: rewritten_to(repository, "Deployment", admin.get(deployment, watched, "app")),
                 "the Helm-installed controller to rewrite the Deployment", 90)
    finally:
        uninstalled = helm("uninstall", release, f"--namespace={namespace}", "--wait", "--timeout=2m",
                           kubeconfig=lab.kubeconfig, check=False)
        lab.kubectl("delete", "namespace", namespace, watched, "--wait=false")
    assert uninstalled.returncode == 0, uninstalled.stderr
    for kind in ("clusterrole", "clusterrolebinding"):
        assert lab.kubectl("get", kind, lease).returncode != 0, f"{kind} {lease} outlived helm uninstall"
