"""A workload whose image is missing upstream: a Warning Event, slow exponential retries, never rewritten."""
from __future__ import annotations

from datetime import datetime

from builders import NGINX, POSTGRES, manifest, pod_spec
from test_controller_harness import events_for, record, rewritten_to

from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.controller_process import ControllerProcess
from lab.waiting import wait_for
from lab.workloads import container_images

MISSING = "library/nginx:no-such-tag"


def retries(process, key):
    lines = [line for line in process.log_lines()
             if line.get("msg") == "reconcile failed, retrying with backoff" and line.get("key") == key]
    return [(datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp(), line) for line in lines]


def test_missing_upstream_image_warns_backs_off_and_is_never_rewritten(lab, namespace, tmp_path):
    admin = lab.admin_api()
    deployment = KINDS["Deployment"]
    spec = pod_spec(lab, "Deployment", main=POSTGRES, side=MISSING)
    admin.create(deployment, namespace, manifest("Deployment", "broken", spec))
    key = f"Deployment/{namespace}/broken"
    with ControllerProcess(lab, tmp_path, namespaces=[namespace], lease_namespace=namespace) as process:
        process.wait_leader_ready()
        warning = wait_for(lambda: [e for e in events_for(lab, namespace, "broken") if e["reason"] == "BackupFailed"],
                           "a BackupFailed event")[0]
        assert warning["type"] == "Warning" and warning["reportingComponent"] == "image-clone"
        assert lab.source_image(MISSING) in warning["message"] and "does not exist" in warning["message"]

        attempts = wait_for(lambda: (found := retries(process, key)) and len(found) >= 3 and found,
                            "three failed attempts", timeout=45)
        delays = [line["retryInSeconds"] for _, line in attempts[:3]]
        assert delays == [5.0, 10.0, 20.0], delays
        assert all(line["reason"] == "image_missing" for _, line in attempts)
        spacing = [later[0] - earlier[0] for earlier, later in zip(attempts, attempts[1:3], strict=False)]
        assert 4.5 <= spacing[0] <= 7 and 9.5 <= spacing[1] <= 12.5, spacing
        record("missing-image retry schedule (s): announced, observed", {"announced": delays,
                                                                         "observed": [round(s, 2) for s in spacing]})

        stored = admin.get(deployment, namespace, "broken")
        assert container_images("Deployment", stored)["main"] == lab.source_image(POSTGRES)  # all or nothing
        assert ORIGINAL_IMAGES not in (stored["metadata"].get("annotations") or {})
        assert process.metric("imageclone_reconcile_failures_total", reason="image_missing") >= 3
        assert process.metric("imageclone_workqueue_retry_waiting") == 1
        # Repeats are folded into the one Event (rate-limited per object and reason), not one per retry.
        assert len([e for e in events_for(lab, namespace, "broken") if e["reason"] == "BackupFailed"]) == 1
        assert process.metric("imageclone_events_suppressed_total", cause="repeat") >= 2

        # The owner fixes the image: the change is handled now, not after the parked retry.
        admin.patch(deployment, namespace, "broken", {"spec": {"template": {"spec": {"containers": [
            {"name": "side", "image": lab.source_image(NGINX)}]}}}})
        wait_for(lambda: rewritten_to(process.repository, "Deployment", admin.get(deployment, namespace, "broken")),
                 "the fixed workload rewritten", timeout=10)
