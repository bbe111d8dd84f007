"""End to end on the lab's real node: pods run, pull from the backup, and survive the upstream's deletion.

Every test pushes its own runnable images (busybox-static inside) under a fresh
repository of the source registry, so deleting tags upstream or counting the node's
pulls never disturbs another test. Pods use the host network and the node's
toleration (lab/node.py); every wait is bounded and, when it times out, shows the
pods' states and the namespace's events.
"""
from __future__ import annotations

import uuid

import pytest
from test_playbook_lab import run_playbook, variables

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.images import runnable_image, web_server_command
from lab.node import node_pod_spec
from lab.pods import (
    PULL_FAILURES,
    describe,
    image_ids,
    is_running,
    is_succeeded,
    owner_of,
    pods,
    rotate_node,
    wait_for_pods,
    waiting_reasons,
)
from lab.processes import free_port

PULL_SECRET = "imageclone-backup-pull"
TIMEOUT = 120


class UpstreamImages:
    """Runnable images pushed for one test under ``<source>/e2e/<random>/``."""

    def __init__(self, lab, *names: str, multi_platform: tuple[str, ...] = ()) -> None:
        self.lab = lab
        self.prefix = f"e2e/{uuid.uuid4().hex[:10]}"
        specs = [runnable_image(f"{self.prefix}/{name}", platforms=("amd64", "arm64") if name in multi_platform
                                else ("amd64",)) for name in names]
        self.digests = {ref.rsplit("/", 1)[1]: digest for ref, digest in lab.push_images(tuple(specs)).items()}

    def tag(self, name: str) -> str:
        """``<source>/e2e/<random>/<name>:1.0``"""
        return self.lab.source_image(f"{self.prefix}/{name}:1.0")

    def by_digest(self, name: str) -> str:
        return self.lab.source_image(f"{self.prefix}/{name}") + "@" + self.digests[f"{name}:1.0"]

    def delete_upstream(self, *names: str) -> None:
        for name in names:
            self.lab.delete_source_tag(f"{self.prefix}/{name}:1.0")

    def node_pulls(self, since: int = 0) -> list:
        """Requests the node made to the source registry for these images."""
        return [r for r in self.lab.registry_requests("registry-source")[since:]
                if r.by_node and r.path.startswith(f"/v2/{self.prefix}/")]


@pytest.fixture
def api(lab) -> KubeApi:
    return lab.admin_api()


@pytest.fixture
def other_namespace(lab, namespace):
    """A second namespace, for workloads the migration must leave alone."""
    name = f"{namespace}-other"
    assert lab.kubectl("create", "namespace", name).returncode == 0
    yield name
    lab.kubectl("delete", "namespace", name, "--wait=false")


def container(image: str, name: str = "main", **fields) -> dict:
    return {"name": name, "image": image, **fields}


def workload(kind: str, name: str, containers: list[dict], **spec_fields) -> dict:
    """A workload the lab's node runs: its pods use the host network and tolerate the node."""
    labels = {"app": name}
    pod = node_pod_spec(containers)
    if kind == "CronJob":
        pod["restartPolicy"] = "Never"
        # Yearly: the tests start its Jobs themselves rather than wait for a schedule.
        spec = {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels}, "spec": pod}}}}
    else:
        spec = {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}}
        if kind in ("Deployment", "StatefulSet"):
            spec["replicas"] = 1
        if kind == "StatefulSet":
            spec.update(serviceName=name, podManagementPolicy="Parallel")
    spec.update(spec_fields)
    return {"apiVersion": KINDS[kind].api_version, "kind": kind, "metadata": {"name": name, "labels": labels},
            "spec": spec}


def run_job_from(lab, namespace: str, cronjob: str, job: str) -> None:
    """Start a Job from the CronJob's template now, as its schedule would."""
    result = lab.kubectl("create", "job", job, f"--from=cronjob/{cronjob}", "-n", namespace)
    assert result.returncode == 0, result.stderr


def from_backup(pod: dict, backup_repository: str, exact_repository: bool) -> bool:
    """Whether every container of ``pod`` was started from a backup reference and runs its digest.

    ``exact_repository``: the node's imageID must also name the backup repository; the
    node may report another name of the same content while it still holds the upstream copy.
    """
    images = [c["image"] for c in pod["spec"]["containers"]]
    if not all(image.startswith(backup_repository + ":") and "@sha256:" in image for image in images):
        return False
    for image, image_id in zip(images, image_ids(pod), strict=False):
        if not image_id.endswith("@" + image.rsplit("@", 1)[1]):
            return False
        if exact_repository and image_id.rsplit("@", 1)[0] != backup_repository:
            return False
    return True


def all_from_backup(backup_repository: str, owners: set[str], exact_repository: bool = False):
    """Condition: every workload in ``owners`` has a Running pod, and every pod runs from the backup."""
    def condition(found: list[dict]) -> bool:
        running = {owner_of(pod) for pod in found if is_running(pod)}
        live = [pod for pod in found if not is_succeeded(pod)]
        return owners <= running and all(from_backup(pod, backup_repository, exact_repository) for pod in live)
    return condition


def job_complete(job: str, backup_repository: str | None = None):
    """Condition: a pod of ``job`` succeeded (from the backup, when ``backup_repository`` is given)."""
    def condition(found: list[dict]) -> bool:
        return any(owner_of(pod) == f"Job/{job}" and is_succeeded(pod)
                   and (backup_repository is None or from_backup(pod, backup_repository, exact_repository=False))
                   for pod in found)
    return condition


def all_running(owners: set[str]):
    return lambda found: owners <= {owner_of(pod) for pod in found if is_running(pod)}


def pull_fails(found: list[dict]) -> bool:
    return bool(found) and all(waiting_reasons(pod) & set(PULL_FAILURES) for pod in found)


def migrate(lab, namespaces: list[str], repository: str, check: bool = True, **more):
    extra = variables(lab, namespaces, repository, imageclone_pull_secret=PULL_SECRET, **more)
    return run_playbook(lab, "migrate", extra, check=check)


def test_a_migrated_namespace_runs_from_the_backup_and_survives_the_upstream_deleting_its_tags(
        lab, api, namespace, other_namespace):
    upstream = UpstreamImages(lab, "web", "worker", "pinned", "db", "agent", "batch", "control",
                              multi_platform=("worker", "agent"))
    sleeper = ["sleep", "86400"]
    objects = [
        workload("Deployment", "web", [container(upstream.tag("web"))]),
        workload("Deployment", "worker", [container(upstream.tag("worker"), command=sleeper)]),  # an image index
        workload("Deployment", "pinned", [container(upstream.by_digest("pinned"))]),
        workload("StatefulSet", "db", [container(upstream.tag("db"))]),
        workload("DaemonSet", "agent", [container(upstream.tag("agent"))]),
        workload("CronJob", "batch", [container(upstream.tag("batch"), command=["echo", "batch done"])]),
    ]
    for body in objects:
        api.create(KINDS[body["kind"]], namespace, body)
    api.create(KINDS["Deployment"], other_namespace, workload("Deployment", "control",
                                                              [container(upstream.tag("control"))]))
    owners = {"Deployment/web", "Deployment/worker", "Deployment/pinned", "StatefulSet/db", "DaemonSet/agent"}
    run_job_from(lab, namespace, "batch", "batch-upstream")
    wait_for_pods(lab, namespace, lambda found: all_running(owners)(found) and job_complete("batch-upstream")(found),
                  "every workload running from upstream and the first Job complete", TIMEOUT)
    wait_for_pods(lab, other_namespace, all_running({"Deployment/control"}), "the control workload running", TIMEOUT)

    repository = f"e2e/{uuid.uuid4().hex[:8]}"
    backup_repository = f"{lab.config.backup_registry}/{repository}"
    mark = len(lab.registry_requests("registry-source"))
    result = migrate(lab, [namespace], repository, imageclone_wait=True, imageclone_wait_timeout=TIMEOUT)
    summary = "workloads: 6 (rewritten 6, unchanged 0, owned 0, blocked 0, failed 0)"
    assert summary in result.stdout, result.stdout[-3000:]

    # imageclone_wait returned once every rollout was Ready: no further waiting for those.
    found = pods(lab, namespace)
    assert all_from_backup(backup_repository, owners)(found), describe(lab, namespace)
    run_job_from(lab, namespace, "batch", "batch-migrated")
    found = wait_for_pods(lab, namespace, lambda found: job_complete("batch-migrated", backup_repository)(found)
                          and all_from_backup(backup_repository, owners)(found),
                          "the migrated CronJob's Job to complete from the backup", TIMEOUT)
    secrets = {s["name"] for pod in found if not is_succeeded(pod) for s in pod["spec"].get("imagePullSecrets", [])}
    assert secrets == {PULL_SECRET}
    assert upstream.node_pulls(mark) == [], "the node pulled from the source registry after the migration"
    backup_pulls = [r for r in lab.registry_requests("registry-backup", repository) if r.by_node and r.status == 200]
    assert any("/manifests/" in r.path for r in backup_pulls), "the node never pulled from the backup"

    # The disaster: upstream deletes every tag, the node forgets its copies, the pods restart.
    upstream.delete_upstream("web", "worker", "pinned", "db", "agent", "batch", "control")
    backup_references = {c["image"] for pod in found for c in pod["spec"]["containers"]}
    cached = [*backup_references, *(upstream.tag(n) for n in ("web", "worker", "db", "agent", "batch", "control")),
              upstream.by_digest("pinned")]

    def forget() -> list[str]:
        removed = lab.node.remove_images(cached)
        assert not [name for name in lab.node.images() if upstream.prefix in name or repository in name]
        return removed

    mark = len(lab.registry_requests("registry-source"))
    assert rotate_node(lab, [namespace, other_namespace], forget), "the node held none of the images"

    run_job_from(lab, namespace, "batch", "batch-after-deletion")
    wait_for_pods(lab, namespace, lambda found: job_complete("batch-after-deletion", backup_repository)(found)
                  and all_from_backup(backup_repository, owners, exact_repository=True)(found),
                  "every migrated workload running again from the backup", TIMEOUT)
    # The workload that was not migrated is gone with its upstream.
    wait_for_pods(lab, other_namespace, pull_fails, "the unmigrated control workload to fail pulling", TIMEOUT)
    assert upstream.node_pulls(mark), "the control workload never tried its upstream"
    assert all(r.status == 404 for r in upstream.node_pulls(mark) if "/manifests/" in r.path)
    assert not [r for r in upstream.node_pulls(mark) if "/control/" not in r.path], "a migrated pod used upstream"


def test_the_backup_registry_serves_pods_only_with_the_pull_secret(lab, api, namespace):
    upstream = UpstreamImages(lab, "app")
    api.create(KINDS["Deployment"], namespace, workload("Deployment", "app", [container(upstream.tag("app"))]))
    repository = f"e2e/{uuid.uuid4().hex[:8]}"
    backup_repository = f"{lab.config.backup_registry}/{repository}"
    migrate(lab, [namespace], repository, imageclone_wait=True, imageclone_wait_timeout=TIMEOUT)
    found = wait_for_pods(lab, namespace, all_from_backup(backup_repository, {"Deployment/app"}),
                          "the migrated pod running from the backup", TIMEOUT)
    backup_reference = found[0]["spec"]["containers"][0]["image"]
    assert found[0]["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]

    # Forget the node's copies so both pods below really pull: one with the Secret, one without.
    rotate_node(lab, [namespace], lambda: lab.node.remove_images([backup_reference, upstream.tag("app")]))
    # Always: an image another pod pulled with the Secret is otherwise reused from the node's cache.
    without = workload("Deployment", "without-secret", [container(backup_reference, imagePullPolicy="Always")])
    api.create(KINDS["Deployment"], namespace, without)
    wait_for_pods(lab, namespace, all_from_backup(backup_repository, {"Deployment/app"}, exact_repository=True),
                  "the pod with the Secret pulling from the backup", TIMEOUT, selector="app=app")
    wait_for_pods(lab, namespace, pull_fails, "the pod without the Secret to fail pulling", TIMEOUT,
                  selector="app=without-secret")
    events = lab.kubectl("get", "events", "-n", namespace, "-o", "jsonpath={.items[*].message}").stdout
    assert "401 Unauthorized" in events or "authorization failed" in events or "unauthorized" in events.lower(), events
    assert parse_reference(backup_reference).registry == lab.config.backup_registry


def test_rollout_pacing_waits_for_ready_pods_and_a_batch_that_never_gets_ready_stops_the_next(
        lab, api, namespace):
    upstream = UpstreamImages(lab, "a", "b", "c")

    def web(name: str, serve: int, probe: int) -> dict:
        # Recreate: on the host network, the old pod must free the port before the new one binds it.
        return workload("Deployment", name, [container(
            upstream.tag(name), command=web_server_command(serve),
            readinessProbe={"httpGet": {"path": "/", "port": probe, "host": "127.0.0.1"},
                            "periodSeconds": 1, "failureThreshold": 1})], strategy={"type": "Recreate"})

    ready_port = free_port()
    api.create(KINDS["Deployment"], namespace, web("a", ready_port, ready_port))
    # b serves one port and is probed on another that nothing listens on: never Ready.
    api.create(KINDS["Deployment"], namespace, web("b", free_port(), free_port()))
    api.create(KINDS["Deployment"], namespace, workload("Deployment", "c", [container(upstream.tag("c"))]))
    wait_for_pods(lab, namespace, all_running({"Deployment/a", "Deployment/c"}), "a and c Ready from upstream",
                  TIMEOUT)

    repository = f"e2e/{uuid.uuid4().hex[:8]}"
    backup_repository = f"{lab.config.backup_registry}/{repository}"
    result = migrate(lab, [namespace], repository, check=False, imageclone_batch_size=1, imageclone_wait=True,
                     imageclone_wait_timeout=25)
    output = result.stdout
    assert result.returncode != 0, output[-3000:]
    # a's batch waited for its pod to be Ready; b's never was and stopped c's batch.
    assert "batch stopped: b: rollouts not complete after 25s" in output, output[-3000:]
    assert f"not attempted (an earlier batch failed): Deployment/{namespace}/c" in output, output[-3000:]
    assert "workloads: 2 (rewritten 2, unchanged 0, owned 0, blocked 0, failed 0)" in output, output[-3000:]
    found = pods(lab, namespace)
    assert all_from_backup(backup_repository, {"Deployment/a"})([p for p in found if owner_of(p) == "Deployment/a"])
    images = {name: api.get(KINDS["Deployment"], namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"]
              for name in ("a", "b", "c")}
    assert images["b"].startswith(backup_repository + ":"), "b's batch was rewritten before its wait failed"
    assert images["c"] == upstream.tag("c"), "the batch after the failed one was rewritten"


def test_the_controller_rewrites_a_new_deployment_whose_pod_then_runs_from_the_backup(lab, api, namespace, tmp_path):
    upstream = UpstreamImages(lab, "fresh")
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                           args=[f"--pullSecret={PULL_SECRET}"]) as controller:
        controller.wait_leader_ready()
        api.create(KINDS["Deployment"], namespace, workload("Deployment", "fresh", [container(upstream.tag("fresh"))]))
        backup_repository = controller.repository
        found = wait_for_pods(lab, namespace, all_from_backup(backup_repository, {"Deployment/fresh"}),
                              "the controller's rewrite to run from the backup", TIMEOUT)
    assert [pod["spec"].get("imagePullSecrets") for pod in found] == [[{"name": PULL_SECRET}]]
    # The first template's pod may have pulled upstream before the rewrite; the pod that runs pulled the backup.
    repository = backup_repository.split("/", 1)[1]
    assert any(r.by_node and r.status == 200 and "/manifests/" in r.path
               for r in lab.registry_requests("registry-backup", repository)), "the node never pulled the backup"
