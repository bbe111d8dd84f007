"""The reconcile loop: informers feed a work queue that N workers drain through the reconciler.

Started only on the leader. ``resync`` re-enqueues every cached workload
periodically (skipping keys already waiting out a backoff) after clearing the
verified-backup cache, so each resync re-checks every backup with a HEAD.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from imageclone_controller.engine import workloads
from imageclone_controller.informer import Informer
from imageclone_controller.log import fields
from imageclone_controller.metrics import ControllerMetrics
from imageclone_controller.reconciler import Reconciler, Result
from imageclone_controller.workqueue import WorkQueue

log = logging.getLogger("imageclone.controller")


class Controller:
    def __init__(
        self,
        informers: Mapping[str, Informer],
        queue: WorkQueue[str],
        reconciler: Reconciler,
        *,
        workers: int,
        resync: float,
        on_resync: Callable[[], None] = lambda: None,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.informers = informers
        self.queue = queue
        self.reconciler = reconciler
        self._workers = workers
        self._resync = resync
        self._on_resync = on_resync
        self._metrics = metrics
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.started = False

    @property
    def synced(self) -> bool:
        return self.started and all(informer.synced for informer in self.informers.values())

    def alive(self) -> bool:
        return not self.started or self._stop.is_set() or all(thread.is_alive() for thread in self._threads)

    def start(self) -> None:
        self.started = True
        for informer in self.informers.values():
            informer.start()
        for number in range(self._workers):
            self._spawn(self._work, f"worker-{number}")
        if self._resync > 0:
            self._spawn(self._resync_loop, "resync")
        log.info("controller started", extra=fields(kinds=list(self.informers), workers=self._workers,
                                                    resyncSeconds=self._resync))

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop watching and taking work; wait up to ``timeout`` for in-flight reconciles. True if all ended."""
        self._stop.set()
        self.queue.shutdown()
        for informer in self.informers.values():
            informer.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        finished = not any(thread.is_alive() for thread in self._threads if thread.name.startswith("worker"))
        if not finished:
            log.warning("stopping with reconciles still running", extra=fields(inFlight=self.queue.in_flight))
        return finished

    # -- loops -------------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                result = self.reconciler.reconcile(item.key, item.queued_at)
                self._after(item.key, result)
            finally:
                self.queue.done(item.key)

    def _after(self, key: str, result: Result) -> None:
        if result.retry is not None:
            delay = self.queue.add_rate_limited(key, result.retry, result.retry_after or 0.0)
            if self._metrics is not None:
                self._metrics.retries.inc(reason=result.reason or "unknown")
            log.warning("reconcile failed, retrying with backoff", extra=fields(
                key=key, result=result.outcome, reason=result.reason, detail=result.detail,
                attempt=self.queue.limiter.failures(key), retryInSeconds=round(delay, 3)))
        elif result.outcome == "deleted":
            self.queue.discard(key)
        else:
            self.queue.forget(key)

    def _resync_loop(self) -> None:
        # A little jitter, so replicas restarted together do not resync in lockstep.
        while not self._stop.wait(self._resync * random.uniform(0.9, 1.0)):
            self.resync()

    def resync(self) -> int:
        """Re-enqueue every cached workload not already waiting for a retry; returns how many."""
        self._on_resync()
        count = 0
        for informer in self.informers.values():
            for key in informer.store.keys():
                if not self.queue.is_parked(key):
                    self.queue.add(key)
                    count += 1
        log.info("resync", extra=fields(enqueued=count))
        return count


def make_informers(api: Any, kinds: Any, queue: WorkQueue[str], *, namespaces: Any = (),
                   ignore_namespaces: Any = (), metrics: ControllerMetrics | None = None) -> dict[str, Informer]:
    """One informer per kind (cluster-wide), or per kind and namespace when ``namespaces`` are given.

    Named namespaces that are never processed (kube-system, ignored ones) get no informer at all.
    """
    def restarted(name: str, cause: str) -> None:
        if metrics is not None:
            metrics.watch_restarts.inc(informer=name, cause=cause)

    scopes = [None] if not namespaces else [
        namespace for namespace in namespaces
        if workloads.namespace_skip_reason(namespace, ignore_namespaces) is None
    ]
    informers = [
        Informer(api, kind, namespace=namespace, on_change=queue.add, on_delete=queue.discard,
                 ignore_namespaces=ignore_namespaces, on_restart=restarted)
        for kind in kinds for namespace in scopes
    ]
    return {informer.name: informer for informer in informers}


def cache_lookup(informers: Mapping[str, Informer]) -> Callable[[str], tuple[Any, Any] | None]:
    """``key -> (Kind, Entry)`` from whichever informer holds ``Kind/namespace/name``."""
    def lookup(key: str) -> tuple[Any, Any] | None:
        kind, namespace, _ = key.split("/", 2)
        for name in (f"{kind}/{namespace}", kind):
            informer = informers.get(name)
            if informer is not None:
                entry = informer.store.get(key)
                return (informer.kind, entry) if entry is not None else None
        return None

    return lookup
