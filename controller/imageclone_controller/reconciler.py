"""reconcile(key): one workload, from the cache, through the engine, to a result the queue acts on.

Idempotent by construction: the engine's ``Migration`` backs up what is not
backed up yet (a verified backup costs one HEAD, answered from
``CachedBackups`` while fresh) and writes only when the workload is not
converged, so reconciling a converged workload, including the watch event of
our own rewrite, sends nothing at all. Decisions (skip, back up, rewrite or
block) are the engine's; this module only maps them to retries, Events,
metrics and logs.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

from imageclone_controller.cache import Entry
from imageclone_controller.engine import kinds, migration, plan, states, workloads
from imageclone_controller.events import NORMAL, WARNING, ObjectRef
from imageclone_controller.log import fields
from imageclone_controller.metrics import ControllerMetrics
from imageclone_controller.workqueue import MISSING_IMAGE, TRANSIENT, RetryPolicy

log = logging.getLogger("imageclone.reconciler")

REWRITTEN: Final = "Rewritten"
BACKUP_FAILED: Final = "BackupFailed"
REWRITE_BLOCKED: Final = "RewriteBlocked"
REWRITE_FAILED: Final = "RewriteFailed"
LEFT_TO_OWNER: Final = "LeftToOwner"


@dataclass(frozen=True)
class Result:
    """What one reconcile came to; ``retry``/``retry_after`` tell the queue when to try again."""

    outcome: str  # rewritten | would_rewrite | unchanged | skipped | blocked | backup_failed | failed | deleted
    reason: str | None = None  # failure reason, a metric label
    detail: str | None = None
    retry: RetryPolicy | None = None
    retry_after: float | None = None  # at least this long (a registry's throttling backoff)


class Reconciler:
    def __init__(
        self,
        engine: migration.Migration,
        lookup: Callable[[str], tuple[kinds.Kind, Entry] | None],  # key -> (Kind, cache Entry), None when gone
        *,
        ignore_namespaces: Collection[str] = (),
        record_event: Callable[[ObjectRef, str, str, str], None] | None = None,
        metrics: ControllerMetrics | None = None,
        seen_registries: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._migration = engine
        self._lookup = lookup
        self._ignore = frozenset(ignore_namespaces)
        self._record_event = record_event
        self._metrics = metrics
        self._clock = clock
        self.seen_registries = seen_registries if seen_registries is not None else set()

    @property
    def dry_run(self) -> bool:
        return bool(self._migration.dry_run)

    def reconcile(self, key: str, queued_at: float | None = None) -> Result:
        started = self._clock()
        kind = key.split("/", 1)[0]
        try:
            result = self._reconcile(key, queued_at if queued_at is not None else started)
        except Exception as error:  # noqa: BLE001 - a bug or the unexpected: retry, never kill the worker
            log.exception("reconcile crashed", extra=fields(key=key))
            result = Result("failed", "internal_error", f"{type(error).__name__}: {error}", TRANSIENT)
        if self._metrics is not None:
            self._metrics.reconciles.inc(kind=kind, result=result.outcome)
            self._metrics.reconcile_duration.observe(self._clock() - started, result=result.outcome)
            if result.reason is not None:
                self._metrics.failures.inc(reason=result.reason)
        return result

    # -- steps -------------------------------------------------------------------------

    def _reconcile(self, key: str, queued_at: float) -> Result:
        found = self._lookup(key)
        if found is None:
            return Result("deleted")
        kind, entry = found
        workload = workloads.workload_from_object(kind, entry.object())
        skip = workloads.skip_reason(workload, self._ignore)
        if skip is not None:
            log.debug("skipped", extra=fields(key=key, reason=skip))
            return Result("skipped", detail=skip)
        for image in workload.images:
            if image.reference is not None:
                self.seen_registries.add(image.reference.registry)

        outcomes = self._migration.back_up([workload])
        signed = {image: outcome.referrers_copied for image, outcome in outcomes.items() if outcome.referrers_copied}
        if signed:
            log.info("referrers copied", extra=fields(key=key, referrers=signed))
        if self._metrics is not None:
            for outcome in outcomes.values():
                if outcome.state is states.ImageState.RESTORED:
                    self._metrics.images.inc(state="restored")
        report = self._migration.rewrite(workload, outcomes)
        ref = ObjectRef(workload.kind.name, workload.kind.api_version, workload.namespace, workload.name,
                        workload.uid)

        if report.state is states.WorkloadState.REWRITTEN:
            return self._rewritten(workload, report, ref, queued_at)
        if report.state is states.WorkloadState.UNCHANGED:
            restored = [image for image, outcome in outcomes.items() if outcome.state is states.ImageState.RESTORED]
            if restored:
                log.info("lost backup restored", extra=fields(key=key, images=restored))
            log.debug("converged", extra=fields(key=key))
            return Result("unchanged")
        if report.state is states.WorkloadState.OWNED:
            # The owner recreates this object from its own spec: say what to configure there.
            self._event(ref, NORMAL, LEFT_TO_OWNER, f"Backed up and verified; not rewritten: {report.reason}")
            log.info("backed up, rewrite left to the owner", extra=fields(key=key, reason=report.reason))
            return Result("owned", detail=report.reason)
        unverified = {image.image: outcomes[image.image] for image in workload.images
                      if image.image in outcomes and not outcomes[image.image].verified}
        if report.state is states.WorkloadState.BLOCKED and unverified:
            return self._backup_failed(workload, unverified, ref)
        if report.state is states.WorkloadState.BLOCKED:
            self._event(ref, WARNING, REWRITE_BLOCKED, report.reason or "the workload cannot be rewritten")
            log.warning("rewrite blocked", extra=fields(key=key, reason=report.reason))
            return Result("blocked", "rewrite_blocked", report.reason)
        self._event(ref, WARNING, REWRITE_FAILED, report.reason or "the rewrite failed")
        return Result("failed", "api_error", report.reason, TRANSIENT)

    def _rewritten(self, workload: workloads.Workload, report: migration.WorkloadReport, ref: ObjectRef,
                   queued_at: float) -> Result:
        changes = report.result.changes if report.result is not None else ()
        summary = "; ".join(f"{change.section} {change.container!r}: {change.before} -> {change.after}"
                            for change in changes)
        verb = "would rewrite" if self.dry_run else "rewritten"
        log.info(verb, extra=fields(key=workload.key, images=len(changes), changes=summary,
                                    pullSecret=report.result.pull_secret if report.result else None))
        if self.dry_run:
            return Result("would_rewrite", detail=summary)
        if self._metrics is not None:
            self._metrics.rewrite_latency.observe(max(0.0, self._clock() - queued_at))
        count = len(changes)
        self._event(ref, NORMAL, REWRITTEN,
                    f"Backed up {count} image{'s' if count != 1 else ''}, verified by digest, and rewrote "
                    f"the workload to the backup: {summary}" if changes else
                    "Rewrote the workload to pull from the backup registry")
        return Result("rewritten", detail=summary)

    def _backup_failed(self, workload: workloads.Workload, unverified: Mapping[str, plan.BackupOutcome],
                       ref: ObjectRef) -> Result:
        missing = any(outcome.state is states.ImageState.MISSING for outcome in unverified.values())
        problems = "; ".join(f"image {image}: {outcome.state}: {outcome.reason or 'no reason given'}"
                             for image, outcome in unverified.items())
        waits = [outcome.retry_after for outcome in unverified.values() if outcome.retry_after is not None]
        reason = "rate_limited" if waits else ("image_missing" if missing else "backup_failed")
        self._event(ref, WARNING, BACKUP_FAILED, f"Not rewritten: {problems}")
        return Result("backup_failed", reason, problems, MISSING_IMAGE if missing else TRANSIENT,
                      max(waits) if waits else None)

    def _event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        if self._record_event is not None and not self.dry_run:
            self._record_event(ref, type_, reason, message)
