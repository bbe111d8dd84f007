"""The controller installed in the lab the ways users install it: deploy/ through a kustomize overlay, or
the Helm chart; then read back as users would: its pods, its Lease, its probes, its logs.

The lab's node takes only pods on the host network (lab/node.py), so what the lab adds to either
install is what any cluster without a pod network would need:

* ``hostNetwork: true``, the node's toleration, and ``KUBERNETES_SERVICE_HOST/PORT`` naming the API
  server on loopback (the ``kubernetes`` Service has no endpoints here);
* metrics on a free port per pod (``--metricsAddr=:0``): two replicas share the node's network, so a
  fixed port would keep the second one from starting; the probes and the metrics Service need a fixed
  port and are left out, and the tests probe each pod's port, found in its startup log line;
* a Namespace that admits host-network pods (``restricted`` does not);
* the lab's backup registry, its CA (a ConfigMap, ``--certsDir``), and the controller scoped with
  ``--namespace`` to the test's namespace, so it never touches what other tests run.
"""
from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.helm import CHART, DEPLOY, helm
from lab.node import NODE_TOLERATION
from lab.pods import describe, is_running, pods, wait_for_pods
from lab.waiting import wait_for

CA_CONFIGMAP = "image-clone-registry-cas"
CERTS_DIR = "/etc/image-clone/certs.d"
DEPLOY_IMAGE = "registry.example.com/image-clone/controller"
SELECTOR = "app.kubernetes.io/name=image-clone,app.kubernetes.io/component=controller"
CREDENTIALS_SECRET = "image-clone-backup-credentials"


@dataclass(frozen=True)
class Install:
    """Where one installed controller lives: its namespace, Lease, backup repository and watched namespace."""

    namespace: str
    lease: str
    repository: str
    watched: str


def backup_repository(lab, prefix: str) -> str:
    return f"{lab.config.backup_registry}/{prefix}/{secrets.token_hex(5)}"


def api_server_env(lab) -> list[dict]:
    return [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(lab.config.ports["kube-apiserver"])}]


def create_prerequisites(lab, namespace: str) -> None:
    """The backup login Secret and the registries' CA in ``namespace``, through the API: the password
    is never in argv."""
    from kubernetes import client, config

    from lab.lab import BACKUP_USER

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(lab.kubeconfig)))
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=CREDENTIALS_SECRET),
        string_data={"username": BACKUP_USER, "password": lab.backup_password()}))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=CA_CONFIGMAP), data={"ca.crt": lab.ca_cert().read_text()}))


def kustomize_overlay(lab, directory: Path, image: str, watched: str, repository: str) -> Path:
    """A kustomization over deploy/ that runs it on the lab's node (see the module's docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    name, digest = image.split("@", 1)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "image-clone-controller", "namespace": "image-clone"},
                  "spec": {"template": {"spec": {
                      "hostNetwork": True, "tolerations": [NODE_TOLERATION],
                      "containers": [{"name": "controller", "env": api_server_env(lab),
                                      "volumeMounts": [{"name": "registry-cas", "mountPath": CERTS_DIR,
                                                        "readOnly": True}]}],
                      "volumes": [{"name": "registry-cas", "configMap": {"name": CA_CONFIGMAP}}]}}}}
    container = "/spec/template/spec/containers/0"
    lab_args = [f"--backupRegistry={repository}", "--leaderElectionID=image-clone-controller",
                "--leaderElectionNamespace=image-clone", "--ignoreNamespace=image-clone",
                f"--namespace={watched}", "--metricsAddr=:0", "--logFormat=json", f"--certsDir={CERTS_DIR}"]
    fixed_port = [{"op": "remove", "path": f"{container}/{field}"}
                  for field in ("ports", "livenessProbe", "readinessProbe")]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, directory)],
        "images": [{"name": DEPLOY_IMAGE, "newName": name, "digest": digest}],
        "patches": [
            {"patch": yaml.safe_dump(deployment)},
            {"target": {"kind": "Deployment", "name": "image-clone-controller"},
             "patch": yaml.safe_dump([{"op": "replace", "path": f"{container}/args", "value": lab_args},
                                      *fixed_port])},
            {"target": {"kind": "Namespace", "name": "image-clone"},
             "patch": yaml.safe_dump([{"op": "replace",
                                       "path": "/metadata/labels/pod-security.kubernetes.io~1enforce",
                                       "value": "privileged"}])},
        ],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return directory


def helm_values(lab, image: str, watched: str, repository: str) -> dict:
    """The chart's values that run it on the lab's node (see the module's docstring)."""
    name, digest = image.split("@", 1)
    return {
        "image": {"repository": name, "digest": digest},
        "backup": {"registry": repository, "caConfigMap": CA_CONFIGMAP},
        "credentials": {"existingSecret": CREDENTIALS_SECRET},
        "namespaces": [watched],
        "hostNetwork": True,
        "tolerations": [NODE_TOLERATION],
        "extraEnv": api_server_env(lab),
        "metrics": {"port": 0},
    }


def helm_install(lab, release: str, namespace: str, values: dict, directory: Path) -> str:
    values_file = directory / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return helm("install", release, str(CHART), f"--namespace={namespace}", f"--values={values_file}",
                "--wait", "--timeout=3m", kubeconfig=lab.kubeconfig).stdout


def controller_pods(lab, namespace: str) -> list[dict]:
    return pods(lab, namespace, SELECTOR)


def wait_for_replicas(lab, namespace: str, count: int, timeout: float = 180.0) -> list[dict]:
    """Wait until exactly ``count`` controller pods run (none being deleted)."""
    return wait_for_pods(lab, namespace, lambda found: len(found) == count and all(is_running(p) for p in found),
                         f"{count} controller pods running in {namespace}", timeout, SELECTOR)


def leads(lab, pod: dict) -> float:
    """The pod's own ``imageclone_leader`` gauge: 1 while it holds the Lease."""
    from lab.controller_process import metric_total, parse_metrics

    status, body = get(metrics_port(lab, pod), "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics of {pod['metadata']['name']} answered {status}")
    return metric_total(parse_metrics(body), "imageclone_leader")


def lease_holder(lab, namespace: str, lease: str) -> str:
    """The pod named in the Lease's holder (``<pod>_<random>``), or '' when nobody holds it."""
    result = lab.kubectl("get", "lease", lease, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}")
    return result.stdout.strip().rsplit("_", 1)[0] if result.returncode == 0 else ""


def explain_lease(lab, namespace: str, lease: str, replicas: list[dict], lines: int = 25) -> str:
    """The Lease as stored, the namespace's pods and events, and the last log lines of each of ``replicas``
    (pods since deleted included, while the node keeps their logs)."""
    stored = lab.kubectl("get", "lease", lease, "-n", namespace, "-o", "yaml")
    report = [f"lease {namespace}/{lease}:", stored.stdout or stored.stderr, describe(lab, namespace)]
    for pod in replicas:
        report.append(f"last log lines of {pod['metadata']['name']}:")
        report += [json.dumps(line) for line in pod_log(lab, pod)[-lines:]]
    return "\n".join(report)


def pod_log(lab, pod: dict) -> list[dict]:
    """The JSON lines of the controller container's log, read from the node's log directory."""
    metadata = pod["metadata"]
    directory = lab.node.kubelet_dir / "pod-logs" / f"{metadata['namespace']}_{metadata['name']}_{metadata['uid']}"
    lines: list[dict] = []
    for path in sorted(directory.glob("controller/*.log")):
        for line in path.read_text(errors="replace").splitlines():
            # CRI format: <time> <stream> <P|F> <message>
            message = line.split(" ", 3)[-1]
            if message.startswith("{"):
                lines.append(json.loads(message))
    return lines


def metrics_port(lab, pod: dict) -> int:
    """The port the pod's controller serves /metrics and /readyz on, from its startup line."""
    def announced() -> int | None:
        for line in pod_log(lab, pod):
            address = line.get("metricsAddr")
            if address:
                return int(str(address).rsplit(":", 1)[1])
        return None

    return wait_for(announced, f"{pod['metadata']['name']} to log its metrics address", 60)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
