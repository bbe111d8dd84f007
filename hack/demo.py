"""The demo on the local lab: workloads whose pods really run, migrated by the playbook.

It creates a namespace of workloads on images of the source registry (busybox
inside, so the lab's node runs them) and waits for their pods to run, then runs
``ansible-playbook imageclone.backup.migrate`` (discover, copy every image with all
platforms and digests, verify, rewrite, wait for the new pods to be Ready) and
prints a before/after table. Then the disaster the product exists for: upstream
deletes a tag, the node forgets its cached copies and every pod restarts, and
they all run again, pulled from the backup. Last, the controller catches a new
Deployment and its pod runs from the backup too.
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

from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES  # noqa: E402
from lab.images import RUNNABLE_BY_DIGEST, RUNNABLE_SEEDS, RUNNABLE_VANISHING, web_server_command  # noqa: E402
from lab.lab import Lab  # noqa: E402
from lab.node import node_pod_spec  # noqa: E402
from lab.pods import image_ids, is_running, is_succeeded, owner_of, rotate_node, wait_for_pods  # noqa: E402
from lab.processes import free_port  # noqa: E402

NAMESPACE = "demo"
PULL_SECRET = "imageclone-backup-pull"
TIMEOUT = 120


def sample_workloads(lab: Lab) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(kind, name, [(container, image)]) for the demo namespace."""
    pinned = RUNNABLE_BY_DIGEST.split(":", 1)[0]
    return [
        ("Deployment", "web", [("httpd", lab.source_image("runnable/httpd:1.0")),
                               ("sidecar", lab.source_image("runnable/sleeper:1.0"))]),
        ("Deployment", "worker", [("worker", lab.source_image("runnable/multiarch:1.0"))]),  # an image index
        ("Deployment", "cache", [("cache", f"{lab.source_image(pinned)}@{lab.config.seeds[RUNNABLE_BY_DIGEST]}")]),
        ("Deployment", "ci", [("runner", lab.source_image("runnable/sleeper:1.0"))]),
        ("DaemonSet", "legacy-agent", [("agent", lab.source_image(RUNNABLE_VANISHING))]),
    ]


def pod_template(name: str, containers: list[tuple[str, str]]) -> dict:
    """Pods the lab's node runs (host network, its toleration); httpd serves a free loopback port."""
    specs = [{"name": c, "image": i} for c, i in containers]
    for spec in specs:
        if spec["name"] == "httpd":
            port = free_port()
            spec["command"] = web_server_command(port)
            spec["readinessProbe"] = {"httpGet": {"path": "/", "port": port, "host": "127.0.0.1"}, "periodSeconds": 1}
    return {"metadata": {"labels": {"app": name}}, "spec": node_pod_spec(specs)}


def ensure_workloads(apps: client.AppsV1Api, lab: Lab) -> None:
    core = client.CoreV1Api(apps.api_client)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as error:
        if error.status != 409:
            raise
    for kind, name, containers in sample_workloads(lab):
        try:
            create_workload(apps, kind, name, containers)
        except ApiException as error:
            if error.status != 409:
                raise


def create_workload(apps: client.AppsV1Api, kind: str, name: str, containers: list[tuple[str, str]]) -> None:
    spec = {"selector": {"matchLabels": {"app": name}}, "template": pod_template(name, containers)}
    body = {"metadata": {"name": name}, "spec": spec}
    if kind == "Deployment":
        # Recreate: on the host network a new httpd pod needs the old one's port.
        spec.update(replicas=1, strategy={"type": "Recreate"})
        apps.create_namespaced_deployment(NAMESPACE, {"apiVersion": "apps/v1", "kind": "Deployment", **body})
    else:
        apps.create_namespaced_daemon_set(NAMESPACE, {"apiVersion": "apps/v1", "kind": "DaemonSet", **body})


def show_pods(lab: Lab, title: str, repository: str = "") -> list[dict]:
    """Wait until every demo workload's pods run (from ``repository``, if given), then print their images."""
    owners = {f"{kind}/{name}" for kind, name, _ in sample_workloads(lab)}

    def settled(found: list[dict]) -> bool:
        live = [p for p in found if not is_succeeded(p)]
        return (owners <= {owner_of(p) for p in live if is_running(p)} and all(map(is_running, live))
                and all(i.startswith(repository + "@") for p in live for i in image_ids(p) if repository))

    found = wait_for_pods(lab, NAMESPACE, settled, f"every demo pod running {repository or 'from its image'}",
                          TIMEOUT)
    print(f"\n{title}")
    rows = [(pod["metadata"]["name"], status["name"], "Running", _short(lab, image_id))
            for pod in found
            for status, image_id in zip(pod["status"]["containerStatuses"], image_ids(pod), strict=False)]
    _table(("POD", "CONTAINER", "STATUS", "RUNNING IMAGE (as the node pulled it)"), rows)
    return found


def run_playbook(lab: Lab, backup_repository: str) -> None:
    """Run the collection's migration playbook on the demo namespace, its output streamed."""
    extra = {
        "imageclone_backup_registry": backup_repository,
        "imageclone_backup_authfile": str(lab.backup_authfile),
        "imageclone_certs_dir": str(lab.certs_dir),
        "imageclone_kubeconfig": str(lab.kubeconfig),
        "imageclone_namespaces": [NAMESPACE],
        "imageclone_pull_secret": PULL_SECRET,
        "imageclone_wait": True,
        "imageclone_wait_timeout": TIMEOUT,
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
            "--leaderElectionID=image-clone-demo", "--metricsAddr=127.0.0.1:0", "--logFormat=text",
            f"--pullSecret={PULL_SECRET}"]
    log = lab.state / "logs" / "demo-controller.log"
    print(f"\n$ imgCloneCtrl --backupRegistry={backup_repository} --namespace={NAMESPACE} ...  (log: {log})")
    with open(log, "ab") as output:
        controller = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        name = f"new-app-{int(time.time())}"
        image = lab.source_image("runnable/sleeper:1.0")
        create_workload(apps, "Deployment", name, [("app", image)])
        created = time.monotonic()
        print(f"created deployment/{name} with {_short(lab, image)}")
        deadline = created + 60
        while time.monotonic() < deadline:
            now = apps.read_namespaced_deployment(name, NAMESPACE).spec.template.spec.containers[0].image
            if now != image:
                print(f"the controller rewrote it after {time.monotonic() - created:.1f}s: {_short(lab, now)}")
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the controller did not rewrite deployment/{name} within 60s; see {log}")
        backup = now.rsplit("@", 1)[0].rsplit(":", 1)[0]
        found = wait_for_pods(lab, NAMESPACE, lambda found: any(
            is_running(p) and image_ids(p)[0].endswith(now.rsplit("@", 1)[1]) for p in found),
            f"deployment/{name}'s pod running from the backup", TIMEOUT, selector=f"app={name}")
        running = next(p for p in found if is_running(p))
        print(f"its pod {running['metadata']['name']} runs {_short(lab, image_ids(running)[0])} "
              f"(pulled from {_short(lab, backup)})")
        apps.delete_namespaced_deployment(name, NAMESPACE)
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
    seeds = {spec.ref_name: spec for spec in RUNNABLE_SEEDS}
    try:
        lab.skopeo("inspect", "--raw", f"--cert-dir={lab.certs_dir}",
                   f"docker://{lab.source_image(RUNNABLE_VANISHING)}")
    except RuntimeError:  # a previous demo deleted it upstream: put it back
        lab.push_images((seeds[RUNNABLE_VANISHING],))

    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(lab.kubeconfig)))
    ensure_workloads(apps, lab)
    backup_repository = f"{lab.config.backup_registry}/imageclone/backup"
    show_pods(lab, f"Pods in namespace '{NAMESPACE}' on the lab's node, before image-clone:")

    before = workload_images(apps, lab)
    run_playbook(lab, backup_repository)
    after = workload_images(apps, lab)

    rows = [(f"{kind.lower()}/{name}", container, _short(lab, after[key][1]), _short(lab, after[key][0]),
             "rewritten" if after[key][0] != image else "unchanged")
            for key, (image, _) in before.items() for kind, name, container in [key]]
    print(f"\nimage-clone demo: namespace '{NAMESPACE}' on the lab cluster "
          f"(source {lab.config.source_registry}, backup {lab.config.backup_registry})\n")
    _table(("WORKLOAD", "CONTAINER", "ORIGINAL IMAGE", "NOW (verified backup)", "THIS RUN"), rows)

    lab.delete_source_tag(RUNNABLE_VANISHING)
    print(f"\nUpstream just deleted {RUNNABLE_VANISHING}. The node forgets its cached images and every pod restarts:")
    forgotten = rotate_node(lab, [NAMESPACE],
                            lambda: lab.node.remove_images([image for pair in after.values() for image in pair]))
    print(f"  the pods in '{NAMESPACE}' stopped, {len(forgotten)} image names were removed from the node, "
          "and the pods start again")
    found = show_pods(lab, "Pods after the restart: every image pulled again, from the backup:", backup_repository)
    legacy = next(p for p in found if owner_of(p) == "DaemonSet/legacy-agent" and is_running(p))
    print(f"\ndaemonset/legacy-agent runs {RUNNABLE_VANISHING}, which upstream deleted: its new pod still pulls it "
          f"from the backup ({_short(lab, image_ids(legacy)[0])}).")

    controller_rewrites_a_new_deployment(apps, lab, backup_repository)
    return 0


def _short(lab: Lab, reference: str) -> str:
    """References with the lab's loopback registries named as such, digests shortened."""
    text = reference.replace(lab.config.source_registry, "<source>").replace(lab.config.backup_registry, "<backup>")
    return re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1…", text)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
