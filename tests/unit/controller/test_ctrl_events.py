"""Events: created once, repeats folded and rate-limited per object and reason, secrets masked."""
from __future__ import annotations

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApiError
from imageclone_controller.events import EventRecorder, ObjectRef, _Pending
from imageclone_controller.log import Redactor

REF = ObjectRef("Deployment", "apps/v1", "shop", "web", "uid-1")


class FakeApi:
    def __init__(self):
        self.created, self.patched = [], []
        self.expired = False

    def create(self, resource, namespace, body):
        self.created.append(body)
        return body

    def patch(self, resource, namespace, name, body, patch_type="strategic"):
        if self.expired:
            raise KubeApiError("patch", name, 404, "NotFound", "gone")
        self.patched.append((name, body, patch_type))
        return body


def recorder(api, **options):
    return EventRecorder(api, "pod-1_abc", interval=300, **options)


def pending(at, reason="BackupFailed", message="image x: missing", ref=REF, type_="Warning"):
    return _Pending(ref, type_, reason, message, at)


def test_first_event_is_created_with_the_reporting_component():
    api = FakeApi()
    recorder(api).send(pending(1000.0))
    (event,) = api.created
    assert event["reportingComponent"] == "image-clone" and event["source"] == {"component": "image-clone"}
    assert event["reportingInstance"] == "pod-1_abc" and event["type"] == "Warning"
    assert event["involvedObject"] == {"kind": "Deployment", "apiVersion": "apps/v1", "namespace": "shop",
                                       "name": "web", "uid": "uid-1"}
    assert event["metadata"]["namespace"] == "shop" and event["metadata"]["name"].startswith("web.")
    assert event["count"] == 1 and event["firstTimestamp"] == event["lastTimestamp"]


def test_repeats_within_the_interval_are_folded_then_patched_with_the_count():
    api, suppressed = FakeApi(), []
    events = recorder(api, on_suppressed=suppressed.append)
    for second in (0, 5, 15, 35, 75):
        events.send(pending(1000.0 + second, message=f"attempt at {second}"))
    assert len(api.created) == 1 and not api.patched and suppressed == ["repeat"] * 4
    events.send(pending(1000.0 + 301, message="still missing"))
    (name, body, patch_type) = api.patched[0]
    assert name == api.created[0]["metadata"]["name"] and patch_type == "merge"
    assert body["count"] == 6 and body["message"] == "still missing"


def test_other_reasons_and_objects_are_separate_and_an_expired_event_is_recreated():
    api = FakeApi()
    events = recorder(api)
    events.send(pending(1000.0))
    events.send(pending(1001.0, reason="Rewritten", type_="Normal"))
    events.send(pending(1002.0, ref=ObjectRef("Deployment", "apps/v1", "shop", "api", "uid-2")))
    assert len(api.created) == 3
    api.expired = True
    events.send(pending(2000.0))
    assert len(api.created) == 4 and api.created[-1]["count"] == 2


def test_messages_are_redacted_and_bounded():
    api = FakeApi()
    recorder(api, redact=Redactor(["hunter22"])).send(pending(1.0, message="auth hunter22 " + "x" * 5000))
    message = api.created[0]["message"]
    assert "hunter22" not in message and len(message) == 1024 and message.endswith("...")


def test_record_never_blocks_a_reconcile():
    dropped = []
    events = EventRecorder(FakeApi(), "i", buffer=2, on_suppressed=dropped.append)
    for _ in range(5):
        events.record(REF, "Warning", "BackupFailed", "m")  # no sender thread running
    assert dropped == ["buffer_full"] * 3
