"""reconcile(key): the engine's verdicts mapped to results, retries and Events (the engine is faked)."""
from __future__ import annotations

from ansible_collections.imageclone.backup.plugins.module_utils.migration import WorkloadReport
from ansible_collections.imageclone.backup.plugins.module_utils.plan import BackupOutcome, ContainerChange
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import RewriteResult
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from imageclone_controller.cache import Store
from imageclone_controller.metrics import ControllerMetrics
from imageclone_controller.reconciler import Reconciler
from imageclone_controller.workqueue import MISSING_IMAGE, TRANSIENT

IMAGE = "quay.io/team/app:1.0"


def deployment(namespace="shop", annotations=None):
    return {"metadata": {"name": "web", "namespace": namespace, "uid": "u1", "resourceVersion": "7",
                         "annotations": annotations or {}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE}]}}}}


class FakeMigration:
    dry_run = False

    def __init__(self, outcome=None, report=None, error=None):
        self.outcome, self.report, self.error = outcome, report, error
        self.backed_up, self.rewritten = [], []

    def back_up(self, workloads):
        if self.error:
            raise self.error
        self.backed_up += [w.key for w in workloads]
        return {IMAGE: self.outcome}

    def rewrite(self, workload, outcomes):
        self.rewritten.append(workload.key)
        return WorkloadReport(workload.key, *self.report) if isinstance(self.report, tuple) else self.report(workload)


def reconciler(migration, obj=None):
    store = Store(KINDS["Deployment"])
    if obj is not None:
        store.upsert(obj)
    events, metrics = [], ControllerMetrics("test")
    found = lambda key: (store.kind, store.get(key)) if store.get(key) else None  # noqa: E731
    return Reconciler(migration, found, record_event=lambda *event: events.append(event), metrics=metrics), \
        events, metrics


def key(namespace="shop"):
    return f"Deployment/{namespace}/web"


def test_rewritten_sends_a_normal_event_and_observes_latency():
    change = ContainerChange("containers", "app", IMAGE, "backup.example/r:tag@sha256:1")

    def report(workload):
        return WorkloadReport(workload.key, "rewritten", None, None, RewriteResult(workload, True, (change,)))

    migration = FakeMigration(BackupOutcome(IMAGE, "backup.example/r:tag@sha256:1", "sha256:1", "copied"), report)
    subject, events, metrics = reconciler(migration, deployment())
    result = subject.reconcile(key(), queued_at=0.0)
    assert result.outcome == "rewritten" and result.retry is None
    ((ref, type_, reason, message),) = events
    assert (ref.kind, ref.name, ref.uid, type_, reason) == ("Deployment", "web", "u1", "Normal", "Rewritten")
    assert IMAGE in message and "backup.example/r:tag@sha256:1" in message
    assert metrics.rewrite_latency.count() == 1
    assert metrics.reconciles.value(kind="Deployment", result="rewritten") == 1


def test_a_missing_image_warns_and_retries_slowly():
    missing = BackupOutcome(IMAGE, None, None, "missing", f"{IMAGE} does not exist in quay.io and has no backup")
    migration = FakeMigration(missing, ("blocked", "containers 'app': not backed up"))
    subject, events, metrics = reconciler(migration, deployment())
    result = subject.reconcile(key())
    assert (result.outcome, result.reason, result.retry) == ("backup_failed", "image_missing", MISSING_IMAGE)
    ((_, type_, reason, message),) = events
    assert (type_, reason) == ("Warning", "BackupFailed") and IMAGE in message and "does not exist" in message
    assert metrics.failures.value(reason="image_missing") == 1


def test_a_failed_copy_retries_fast_and_a_throttled_registry_waits_its_window():
    failed = BackupOutcome(IMAGE, None, None, "failed", "HTTP 503 after 4 attempts", transient=True)
    result = reconciler(FakeMigration(failed, ("blocked", "x")), deployment())[0].reconcile(key())
    assert (result.reason, result.retry, result.retry_after) == ("backup_failed", TRANSIENT, None)
    throttled = BackupOutcome(IMAGE, None, None, "failed", "HTTP 429 after 4 attempts", transient=True,
                              retry_after=120.0)
    result = reconciler(FakeMigration(throttled, ("blocked", "x")), deployment())[0].reconcile(key())
    assert (result.reason, result.retry_after) == ("rate_limited", 120.0)


def test_blocked_for_other_reasons_warns_without_retrying():
    present = BackupOutcome(IMAGE, "b/r:t@sha256:1", "sha256:1", "present")
    subject, events, _ = reconciler(FakeMigration(present, ("blocked", "Job pod templates are immutable")),
                                    deployment())
    result = subject.reconcile(key())
    assert (result.outcome, result.retry) == ("blocked", None)
    assert events[0][2] == "RewriteBlocked"


def test_api_failures_retry_and_warn():
    present = BackupOutcome(IMAGE, "b/r:t@sha256:1", "sha256:1", "present")
    subject, events, _ = reconciler(FakeMigration(present, ("failed", "patch: Forbidden (403)")), deployment())
    result = subject.reconcile(key())
    assert (result.outcome, result.reason, result.retry) == ("failed", "api_error", TRANSIENT)
    assert events[0][2] == "RewriteFailed"


def test_skipped_and_deleted_workloads_cost_nothing():
    migration = FakeMigration()
    subject, events, _ = reconciler(migration, deployment(namespace="kube-system"))
    assert subject.reconcile(key("kube-system")).outcome == "skipped"
    subject, events, _ = reconciler(migration, deployment(annotations={"imageclone.io/skip": "true"}))
    assert subject.reconcile(key()).outcome == "skipped"
    assert subject.reconcile("Deployment/shop/gone").outcome == "deleted"
    assert migration.backed_up == [] and events == []


def test_unchanged_is_quiet_and_a_crash_is_retried():
    present = BackupOutcome(IMAGE, "b/r:t@sha256:1", "sha256:1", "present")
    subject, events, _ = reconciler(FakeMigration(present, ("unchanged", None)), deployment())
    assert subject.reconcile(key()).outcome == "unchanged" and events == []
    subject, _, metrics = reconciler(FakeMigration(error=RuntimeError("boom")), deployment())
    result = subject.reconcile(key())
    assert (result.outcome, result.reason, result.retry) == ("failed", "internal_error", TRANSIENT)


def test_dry_run_sends_no_events_and_counts_would_rewrite():
    change = ContainerChange("containers", "app", IMAGE, "b/r:t@sha256:1")
    migration = FakeMigration(BackupOutcome(IMAGE, "b/r:t@sha256:1", "sha256:1", "copied"),
                              lambda w: WorkloadReport(w.key, "rewritten", None, None,
                                                       RewriteResult(w, True, (change,))))
    migration.dry_run = True
    subject, events, _ = reconciler(migration, deployment())
    assert subject.reconcile(key()).outcome == "would_rewrite" and events == []
