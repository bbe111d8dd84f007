"""The controller as users run it: its image built offline (`make image`), deploy/ applied with
`kubectl apply -k` through the lab's overlay (lab/in_cluster.py), two replicas as pods on the lab's node.

They must reach the API server with nothing but in-cluster configuration and their ServiceAccount
token, elect one leader, rewrite a new Deployment, answer /metrics and /readyz, be refused what
deploy/'s ClusterRole does not grant, and hand over when the leader's pod is deleted.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from builders import manifest, pod_spec
from test_controller_harness import record, rewritten_to
from test_controller_rbac import SA, token_kubeconfig

from ansible_collections.imageclone.backup.plugins.module_utils.kinds import DEFAULT_WATCHED
from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError, new_api_client
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import SECRET
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from imageclone_controller.rbac import cluster_role
from lab import image_build, in_cluster
from lab.controller_process import parse_metrics
from lab.pods import describe, is_running
from lab.waiting import wait_for

NAMESPACE = "image-clone"
LEASE = "image-clone-controller"
# SIGTERM releases the Lease and a standby polls it every 2 s (docs/controller.md: at most 2.4 s); the
# rest is the kubelet stopping the container and this test's polling.
HANDOVER_LIMIT = 5.0


@pytest.fixture(scope="module")
def controller_image(lab) -> str:
    """The image `make image` builds (cached when its inputs are unchanged), pushed to the lab."""
    return image_build.push(lab)


@pytest.fixture(scope="module")
def installed(lab, controller_image, tmp_path_factory):
    """deploy/ applied with `kubectl apply -k` through the lab overlay; removed the same way afterwards."""
    watched = f"in-cluster-{uuid.uuid4().hex[:6]}"
    for namespace in (NAMESPACE, watched):
        created = lab.kubectl("create", "namespace", namespace)
        assert created.returncode == 0, created.stderr
    in_cluster.create_prerequisites(lab, NAMESPACE)
    repository = in_cluster.backup_repository(lab, "in-cluster")
    overlay = in_cluster.kustomize_overlay(lab, tmp_path_factory.mktemp("overlay"), controller_image, watched,
                                           repository)
    applied = lab.kubectl("apply", "-k", str(overlay))
    assert applied.returncode == 0, applied.stderr
    try:
        in_cluster.wait_for_replicas(lab, NAMESPACE, 2)
        yield in_cluster.Install(NAMESPACE, LEASE, repository, watched)
    finally:
        lab.kubectl("delete", "-k", str(overlay), "--wait=true", "--timeout=120s")
        lab.kubectl("delete", "namespace", watched, "--wait=false")


def test_two_replicas_run_with_in_cluster_configuration_and_one_holds_the_lease(lab, installed):
    running = in_cluster.controller_pods(lab, NAMESPACE)
    assert len(running) == 2 and all(is_running(pod) for pod in running), describe(lab, NAMESPACE)
    for pod in running:
        container = pod["spec"]["containers"][0]
        assert pod["spec"]["serviceAccountName"] == SA
        assert not any(arg.startswith("--kubeconfig") for arg in container["args"])
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    holder = wait_for(lambda: in_cluster.lease_holder(lab, NAMESPACE, LEASE), "a replica to take the Lease", 60)
    assert holder in {pod["metadata"]["name"] for pod in running}
    # Each replica says, on its own /metrics, whether it leads: exactly one does.
    leading = {pod["metadata"]["name"]: in_cluster.leads(lab, pod) for pod in running}
    assert sorted(leading.values()) == [0.0, 1.0] and leading[holder] == 1.0, leading
    # The API server saw the Lease written by the ServiceAccount: the pods authenticated with its token.
    writers = {event["user"]["username"] for event in lab.audit_events()
               if event.get("objectRef", {}).get("resource") == "leases"
               and event.get("objectRef", {}).get("namespace") == NAMESPACE}
    assert writers == {f"system:serviceaccount:{NAMESPACE}:{SA}"}


def test_the_image_runs_as_non_root_with_tini_as_pid_1(lab, installed):
    built = json.loads((image_build.ensure_image() / "build.json").read_text())
    assert built["user"] == "65532:65532" and built["entrypoint"][:2] == ["/usr/bin/tini", "--"], built
    record("image_layers", built["layers"])
    record("image_compressed_mib", round(built["compressed_bytes"] / 2**20, 1))
    tasks = dict(line.split()[:2] for line in lab.node.ctr("tasks", "list").stdout.splitlines()[1:])
    for pod in in_cluster.controller_pods(lab, NAMESPACE):
        container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
        init = Path(f"/proc/{tasks[container]}")
        assert (init / "cmdline").read_bytes().split(b"\0")[0] == b"/usr/bin/tini"
        ids = {line.split(":")[0]: set(line.split()[1:]) for line in (init / "status").read_text().splitlines()
               if line.startswith(("Uid:", "Gid:"))}
        assert ids == {"Uid": {"65532"}, "Gid": {"65532"}}, ids


def test_the_leader_rewrites_a_new_deployment(lab, admin, installed):
    deployment = KINDS["Deployment"]
    name = f"app-{uuid.uuid4().hex[:6]}"
    admin.create(deployment, installed.watched, manifest("Deployment", name, pod_spec(lab, "Deployment")))
    started = time.monotonic()
    wait_for(lambda: rewritten_to(installed.repository, "Deployment", admin.get(deployment, installed.watched, name)),
             "the in-cluster controller to rewrite the Deployment", 90,
             explain=lambda: "\n".join(str(line) for pod in in_cluster.controller_pods(lab, NAMESPACE)
                                       for line in in_cluster.pod_log(lab, pod)[-15:]))
    record("in_cluster_rewrite_seconds", round(time.monotonic() - started, 2))


def test_metrics_and_readyz_answer_on_every_replica(lab, installed):
    for pod in in_cluster.controller_pods(lab, NAMESPACE):
        port = in_cluster.metrics_port(lab, pod)
        status, body = in_cluster.get(port, "/readyz")
        assert status == 200, body
        status, body = in_cluster.get(port, "/metrics")
        assert status == 200 and any(name == "imageclone_leader" for name, _ in parse_metrics(body)), body[:500]


def test_the_service_account_is_refused_what_the_cluster_role_does_not_grant(lab, kube, installed, tmp_path):
    stored = lab.kubectl("get", "clusterrole", SA, "-o", "json")
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["rules"] == cluster_role(KINDS[kind] for kind in DEFAULT_WATCHED)["rules"]
    api = KubeApi(new_api_client({"kubeconfig": str(token_kubeconfig(lab, kube, NAMESPACE, tmp_path / "sa"))}))
    deployment = KINDS["Deployment"]
    assert api.list(deployment, installed.watched) is not None  # granted: list deployments
    for refused in (lambda: api.delete(deployment, installed.watched, "anything"),
                    lambda: api.create(deployment, installed.watched,
                                       manifest("Deployment", "intruder", pod_spec(lab, "Deployment"))),
                    lambda: api.list(SECRET, installed.watched)):
        with pytest.raises(KubeApiError) as caught:
            refused()
        assert caught.value.status == 403, caught.value


def test_deleting_the_leader_pod_hands_over_to_another_replica(lab, installed):
    leader = wait_for(lambda: in_cluster.lease_holder(lab, NAMESPACE, LEASE), "a leader", 60)
    replicas = in_cluster.controller_pods(lab, NAMESPACE)
    standby = next(pod["metadata"]["name"] for pod in replicas if pod["metadata"]["name"] != leader)
    started = time.monotonic()
    deleted = lab.kubectl("delete", "pod", leader, "-n", NAMESPACE, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr

    def successor() -> str:
        holder = in_cluster.lease_holder(lab, NAMESPACE, LEASE)
        return holder if holder != leader else ""

    # Released on SIGTERM, the Lease goes to the first replica that asks: the standby on its next try, or
    # the Deployment's replacement pod when that one starts sooner. Either keeps the cluster protected.
    new_leader = wait_for(successor, "another replica to take the Lease", 30, interval=0.1,
                          explain=lambda: in_cluster.explain_lease(lab, NAMESPACE, LEASE, replicas))
    handover = time.monotonic() - started
    record("in_cluster_handover_seconds", round(handover, 2))
    record("in_cluster_handover_to", "the standby" if new_leader == standby else "the replacement pod")
    assert handover <= HANDOVER_LIMIT
    # The Deployment replaces the deleted pod; the new leader keeps the Lease, the other replica waits.
    running = in_cluster.wait_for_replicas(lab, NAMESPACE, 2)
    assert new_leader in {pod["metadata"]["name"] for pod in running}
    assert in_cluster.lease_holder(lab, NAMESPACE, LEASE) == new_leader
