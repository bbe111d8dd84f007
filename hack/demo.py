"""The demo on the local lab: sample workloads on public-style images, migrated by the playbook.

It creates a namespace of workloads, runs ``ansible-playbook imageclone.backup.migrate``
(discover, copy every image with all platforms and digests, verify, rewrite),
prints a before/after table, then plays the disaster the product exists for: a
tag deleted upstream, still served from the backup.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.collection import collections_root, import_engine  # noqa: E402

import_engine()

from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference  # noqa: E402
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES  # noqa: E402
from lab.images import DIGEST_REFERENCED, SEED_IMAGES, VANISHING  # noqa: E402
from lab.lab import Lab  # noqa: E402

NAMESPACE = "demo"


def sample_workloads(lab: Lab) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(kind, name, [(container, image)]) for the demo namespace."""
    redis_by_digest = f"{lab.config.source_registry}/library/redis@{lab.config.seeds[DIGEST_REFERENCED]}"
    return [
        ("Deployment", "web", [("nginx", lab.source_image("library/nginx:1.27")),
                               ("sidecar", lab.source_image("library/busybox:1.36"))]),
        ("Deployment", "db", [("postgres", lab.source_image("library/postgres:16"))]),
        ("Deployment", "ci", [("jenkins", lab.source_image("jenkins/jenkins:lts"))]),
        ("Deployment", "cache", [("redis", redis_by_digest)]),
        ("DaemonSet", "legacy-agent", [("agent", lab.source_image(VANISHING))]),
    ]


def pod_template(name: str, containers: list[tuple[str, str]]) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": name}),
        spec=client.V1PodSpec(containers=[client.V1Container(name=c, image=i) for c, i in containers]),
    )


def ensure_workloads(apps: client.AppsV1Api, lab: Lab) -> None:
    core = client.CoreV1Api(apps.api_client)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as error:
        if error.status != 409:
            raise
    for kind, name, containers in sample_workloads(lab):
        selector = client.V1LabelSelector(match_labels={"app": name})
        template = pod_template(name, containers)
        meta = client.V1ObjectMeta(name=name)
        try:
            if kind == "Deployment":
                apps.create_namespaced_deployment(NAMESPACE, client.V1Deployment(
                    metadata=meta, spec=client.V1DeploymentSpec(replicas=1, selector=selector, template=template)))
            else:
                apps.create_namespaced_daemon_set(NAMESPACE, client.V1DaemonSet(
                    metadata=meta, spec=client.V1DaemonSetSpec(selector=selector, template=template)))
        except ApiException as error:
            if error.status != 409:
                raise


def run_playbook(lab: Lab, backup_repository: str) -> None:
    """Run the collection's migration playbook on the demo namespace, its output streamed."""
    extra = {
        "imageclone_backup_registry": backup_repository,
        "imageclone_backup_authfile": str(lab.backup_authfile),
        "imageclone_certs_dir": str(lab.certs_dir),
        "imageclone_kubeconfig": str(lab.kubeconfig),
        "imageclone_namespaces": [NAMESPACE],
        "ansible_python_interpreter": sys.executable,
    }
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections_root()), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    print(f"$ ansible-playbook imageclone.backup.migrate -e imageclone_backup_registry={backup_repository} ...")
    subprocess.run([str(bin_dir / "ansible-playbook"), "imageclone.backup.migrate", "-e", json.dumps(extra)],
                   check=True, env=env)


def controller_rewrites_a_new_deployment(apps: client.AppsV1Api, lab: Lab, backup_repository: str) -> None:
    """Start imgCloneCtrl on the demo namespace, deploy something new, show the controller rewrite it."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections_root())}
    argv = [str(bin_dir / "imgCloneCtrl"), f"--backupRegistry={backup_repository}",
            f"--backupAuthFile={lab.backup_authfile}", f"--certsDir={lab.certs_dir}",
            f"--kubeconfig={lab.kubeconfig}", f"--namespace={NAMESPACE}", "--leaderElectionNamespace=default",
            "--leaderElectionID=image-clone-demo", "--metricsAddr=127.0.0.1:0", "--logFormat=text"]
    log = lab.state / "logs" / "demo-controller.log"
    print(f"\n$ imgCloneCtrl --backupRegistry={backup_repository} --namespace={NAMESPACE} ...  (log: {log})")
    with open(log, "ab") as output:
        controller = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        name = f"new-app-{int(time.time())}"
        image = lab.source_image("library/postgres:16")
        apps.create_namespaced_deployment(NAMESPACE, client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DeploymentSpec(replicas=1, selector=client.V1LabelSelector(match_labels={"app": name}),
                                         template=pod_template(name, [("app", image)]))))
        created = time.monotonic()
        print(f"created deployment/{name} with {_short(lab, image)}")
        deadline = created + 60
        while time.monotonic() < deadline:
            now = apps.read_namespaced_deployment(name, NAMESPACE).spec.template.spec.containers[0].image
            if now != image:
                print(f"the controller rewrote it after {time.monotonic() - created:.1f}s: {_short(lab, now)}")
                apps.delete_namespaced_deployment(name, NAMESPACE)
                return
            time.sleep(0.2)
        raise RuntimeError(f"the controller did not rewrite deployment/{name} within 60s; see {log}")
    finally:
        controller.terminate()
        controller.wait(timeout=30)


def workload_images(apps: client.AppsV1Api, lab: Lab) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(kind, name, container) -> (image now, image before image-clone), for the demo workloads."""
    images = {}
    for kind, name, _ in sample_workloads(lab):
        read = apps.read_namespaced_deployment if kind == "Deployment" else apps.read_namespaced_daemon_set
        workload = read(name, NAMESPACE)
        recorded = json.loads((workload.metadata.annotations or {}).get(ORIGINAL_IMAGES, "{}"))
        for container in workload.spec.template.spec.containers:
            original = recorded.get("containers", {}).get(container.name, container.image)
            images[(kind, name, container.name)] = (container.image, original)
    return images


def main() -> int:
    lab = Lab()
    seeds = {spec.ref_name: spec for spec in SEED_IMAGES}
    try:
        lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"docker://{lab.source_image(VANISHING)}")
    except RuntimeError:  # a previous demo deleted it upstream: put it back
        lab.push_images((seeds[VANISHING],))

    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(lab.kubeconfig)))
    ensure_workloads(apps, lab)
    backup_repository = f"{lab.config.backup_registry}/imageclone/backup"

    before = workload_images(apps, lab)
    run_playbook(lab, backup_repository)
    after = workload_images(apps, lab)

    rows = [(f"{kind.lower()}/{name}", container, _short(lab, after[key][1]), _short(lab, after[key][0]),
             "rewritten" if after[key][0] != image else "unchanged")
            for key, (image, _) in before.items() for kind, name, container in [key]]
    print(f"\nimage-clone demo: namespace '{NAMESPACE}' on the lab cluster "
          f"(source {lab.config.source_registry}, backup {lab.config.backup_registry})\n")
    _table(("WORKLOAD", "CONTAINER", "ORIGINAL IMAGE", "NOW (verified backup)", "THIS RUN"), rows)

    lab.delete_source_tag(VANISHING)
    legacy = parse_reference(after[("DaemonSet", "legacy-agent", "agent")][0])
    lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}", f"--authfile={lab.backup_authfile}",
               f"docker://{legacy.without_tag()}")
    print(f"\nUpstream just deleted {VANISHING}; daemonset/legacy-agent still pulls it from the backup "
          f"({_short(lab, str(legacy))}).")

    controller_rewrites_a_new_deployment(apps, lab, backup_repository)
    return 0


def _short(lab: Lab, reference: str) -> str:
    """References with the lab's loopback registries named as such, digests shortened."""
    text = reference.replace(lab.config.source_registry, "<source>").replace(lab.config.backup_registry, "<backup>")
    return re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1…", text)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
