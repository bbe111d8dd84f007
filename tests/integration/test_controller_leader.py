"""Leader election between real controller processes sharing one Lease."""
from __future__ import annotations

import signal
import time
import uuid

from builders import manifest, pod_spec
from test_controller_harness import record, rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.kube import Resource
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess, backup_repository
from lab.waiting import wait_for

LEASE = Resource("Lease", "coordination.k8s.io/v1", "leases")
LEASE_DURATION, RETRY_PERIOD = 15.0, 2.0


def wait_for_leader(processes, timeout=40.0):
    def probe():
        leaders = [p for p in processes if p.running() and p.leader()]
        return leaders[0] if len(leaders) == 1 else None

    return wait_for(probe, "exactly one leader", timeout)


def test_only_the_leader_works_and_the_lease_moves_on_kill_and_on_sigterm(lab, namespace, tmp_path):
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    repository = backup_repository(lab)
    lease_id = f"ctrl-{uuid.uuid4().hex[:6]}"

    def candidate(name):
        return ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace,
                                 lease_id=lease_id, repository=repository, name=name).start()

    first, second = candidate("a"), candidate("b")
    processes = [first, second]
    try:
        leader = wait_for_leader(processes)
        standby = second if leader is first else first
        leader.wait_leader_ready()
        assert wait_for(standby.ready, "the standby to report ready"), "a standby is ready (it waits, healthy)"
        holder = admin.get(LEASE, namespace, lease_id)["spec"]["holderIdentity"]
        assert any(line.get("identity") == holder and line["msg"] == "became leader" for line in leader.log_lines())

        admin.create(deployment, namespace, manifest("Deployment", "one", pod_spec(lab, "Deployment")))
        wait_for(lambda: rewritten_to(repository, "Deployment", admin.get(deployment, namespace, "one")), "rewrite")
        time.sleep(1)
        assert leader.metric("imageclone_kube_writes_total") >= 1
        assert standby.metric("imageclone_leader") == 0
        assert standby.metric("imageclone_kube_writes_total") == 0
        assert standby.metric("imageclone_reconcile_total") == 0
        assert standby.metric("imageclone_informer_synced") == 0  # a standby does not even watch

        # SIGKILL: no chance to release; the standby takes over once the lease expires.
        killed_at = time.monotonic()
        leader.send(signal.SIGKILL)
        successor = wait_for_leader([standby], timeout=LEASE_DURATION + 3 * RETRY_PERIOD + 10)
        kill_handover = time.monotonic() - killed_at
        assert kill_handover <= LEASE_DURATION + 3 * RETRY_PERIOD, kill_handover
        admin.create(deployment, namespace, manifest("Deployment", "two", pod_spec(lab, "Deployment")))
        wait_for(lambda: rewritten_to(repository, "Deployment", admin.get(deployment, namespace, "two")),
                 "rewrite by the new leader")

        # SIGTERM: the leader stops working and releases the lease; a standby takes it at once.
        third = candidate("c")
        processes.append(third)
        wait_for(lambda: third.ready() and not third.leader(), "a third replica on standby")
        time.sleep(RETRY_PERIOD)  # it has looked at the lease at least once
        termed_at = time.monotonic()
        successor.send(signal.SIGTERM)
        wait_for_leader([third], timeout=LEASE_DURATION)
        term_handover = time.monotonic() - termed_at
        assert successor.process.wait(15) == 0
        assert any(line["msg"] == "released the lease" for line in successor.log_lines())
        assert term_handover < 2 * RETRY_PERIOD + 1, term_handover
        record("leader handover (s)", {"after SIGKILL": round(kill_handover, 2),
                                       "after SIGTERM (lease released)": round(term_handover, 2)})
        third.wait_leader_ready()
    finally:
        for process in processes:
            process.stop()
