"""Wires everything together and owns the process lifecycle (controller-runtime's Manager).

Startup: build the engine's services from the config, serve /metrics /healthz
/readyz, campaign for the Lease. On becoming leader: start informers and
workers. On SIGTERM/SIGINT: stop taking work, kill in-flight copies (the next
leader redoes them), let in-flight reconciles finish (bounded), flush events,
release the Lease so a standby takes over at once, exit 0; a second signal
exits at once. On losing the Lease (not renewed within the renew deadline,
e.g. the API server is unreachable): every write is refused from that instant
(the API clients' write guard), copies are killed, informers and workers
stop, the cache is dropped, and we campaign again as a standby; a new term
starts from a fresh list.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any, Final

from imageclone_controller import __version__
from imageclone_controller.backupcache import CachedBackups
from imageclone_controller.config import ControllerConfig
from imageclone_controller.controller import Controller, cache_lookup, make_informers
from imageclone_controller.engine import factory, kube, migration, workloads
from imageclone_controller.events import EventRecorder
from imageclone_controller.leader import LeaderElector
from imageclone_controller.log import Redactor, fields
from imageclone_controller.metrics import ControllerMetrics
from imageclone_controller.reconciler import Reconciler
from imageclone_controller.server import HealthServer
from imageclone_controller.workqueue import WorkQueue

log = logging.getLogger("imageclone.manager")

SHUTDOWN_GRACE: Final = 10.0
VERIFIED_TTL_MAX: Final = 600.0
# Lease requests give up well inside the renew deadline; the elector abandons them at the term's end anyway.
LEASE_TIMEOUTS: Final = kube.Timeouts(connect=2.0, read=4.0)
EXIT_FORCED: Final = 1


_DRY_RUN_IMAGE_STATES: Final = {"copied": "would_copy", "restored": "would_restore"}


def image_state(state: str, dry_run: bool) -> str:
    """An image outcome as the metrics count it: with --dryRun nothing was copied, only would be."""
    return _DRY_RUN_IMAGE_STATES.get(state, state) if dry_run else state


class StartupError(Exception):
    """The controller cannot start (cluster configuration, engine options, listen address)."""


def identity() -> str:
    """Who we are in the Lease: the pod name and a random suffix, unique per process.

    ``$POD_NAME`` (the downward API, set by deploy/ and the chart) comes first: with ``hostNetwork`` every
    pod shares the node's hostname, and the Lease would not tell which pod leads."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:10]}"


class Manager:
    def __init__(self, config: ControllerConfig, *, redact: Redactor | None = None) -> None:
        self.config = config
        self.identity = identity()
        self.metrics = ControllerMetrics(__version__)
        self._stop = threading.Event()
        self._stopped_by_signal = False
        redact = redact or Redactor(config.secrets())
        try:
            base = kube.new_api_client(config.connection())
            timeouts = kube.Timeouts.from_options(config.connection())
        except kube.KubeConfigError as error:
            raise StartupError(str(error)) from None
        agent = f"imgCloneCtrl/{__version__} ({self.identity})"

        def pool(size: int) -> Any:
            return kube.pooled_copy(base, size, agent)

        self.elector = LeaderElector(
            kube.KubeApi(pool(2), timeouts=LEASE_TIMEOUTS),
            config.leader_election_namespace, config.leader_election_id, self.identity,
            on_started_leading=self._start_leading)
        self.kinds = [workloads.KINDS[name] for name in config.kinds]
        self.api = kube.KubeApi(pool(config.workers + 4), timeouts=timeouts, write_guard=self.elector.ensure_leading)
        options = factory.BackupOptions.from_mapping(config.backup_options())
        self.service = factory.backup_service(options, dry_run=config.dry_run)
        ttl = min(config.resync, VERIFIED_TTL_MAX) if config.resync > 0 else VERIFIED_TTL_MAX
        self.backups = CachedBackups(self.service, ttl, on_checked=lambda outcome: self.metrics.images.inc(
            state=image_state(outcome.state, config.dry_run)))
        try:
            pull_secret = options.pull_secret(config.pull_secret) if config.pull_secret else None
        except ValueError as error:
            raise StartupError(str(error)) from None
        scope = migration.Scope.of(kinds=config.kinds, namespaces=config.namespaces or None,
                                   ignore_namespaces=config.ignore_namespaces)
        self.migration = migration.Migration(self.api, self.backups, scope, pull_secret,
                                             use_pull_secrets=options.use_pull_secrets)
        self.events = EventRecorder(
            kube.KubeApi(pool(2), timeouts=timeouts, write_guard=self.elector.ensure_leading),
            self.identity, redact=redact,
            on_sent=lambda type_, reason: self.metrics.events.inc(type=type_, reason=reason),
            on_suppressed=lambda cause: self.metrics.events_suppressed.inc(cause=cause))
        self.registries = self.service.registry
        self._seen_registries: set[str] = {options.policy.target_registry}
        # One connection per watch, plus one for a relist.
        self._watch_api = kube.KubeApi(pool(len(self.kinds) * max(1, len(config.namespaces)) + 1),
                                       timeouts=timeouts)
        self.controller = self._new_controller()

        self.metrics.bind_queue(lambda: self.controller.queue)
        self.metrics.bind_informers(lambda: self.controller.informers)
        self.metrics.bind_kube(self.api)
        if self.registries is not None:
            self.metrics.bind_registries(self.registries, lambda: set(self._seen_registries))
        try:
            self.server = HealthServer(config.metrics_addr, self.metrics.registry.render, self.healthz, self.readyz)
        except OSError as error:
            raise StartupError(f"cannot listen on --metricsAddr {config.metrics_addr}: {error}") from None
        self._elector_thread = threading.Thread(target=self._campaign, name="leader", daemon=True)

    def _new_controller(self) -> Controller:
        """Fresh informers, queue and workers (a term of leadership starts from an empty cache)."""
        config = self.config
        queue: WorkQueue[str] = WorkQueue()
        informers = make_informers(self._watch_api, self.kinds, queue, namespaces=config.namespaces,
                                   ignore_namespaces=config.ignore_namespaces, metrics=self.metrics)
        reconciler = Reconciler(
            self.migration, cache_lookup(informers), ignore_namespaces=config.ignore_namespaces,
            record_event=self.events.record, metrics=self.metrics,
            seen_registries=self._seen_registries)
        return Controller(informers, queue, reconciler, workers=config.workers, resync=config.resync,
                          on_resync=self._on_resync, metrics=self.metrics)

    def _on_resync(self) -> None:
        # A resync re-verifies everything: backups (HEAD again) and pull Secrets (someone may delete one).
        self.backups.clear()
        self.migration.forget_pull_secrets()

    # -- probes ------------------------------------------------------------------------

    def healthz(self) -> tuple[bool, str]:
        if not self._stop.is_set() and not self._elector_thread.is_alive():
            return False, "the leader election loop is not running"
        if not self.controller.alive():
            return False, "a worker or informer thread died"
        return True, "ok"

    def readyz(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "shutting down"
        if not self.elector.leading:
            if self.elector.last_error is not None:
                return False, f"standby, but the lease cannot be used: {self.elector.last_error}"
            return True, "ok: standby, waiting for the leader lease"
        if not self.controller.synced:
            pending = [name for name, informer in self.controller.informers.items() if not informer.synced]
            return False, f"leader, caches not synced yet: {', '.join(pending)}"
        return True, "ok: leader, caches synced"

    # -- lifecycle ---------------------------------------------------------------------

    def run(self) -> int:
        self._install_signal_handlers()
        self.server.start()
        host, port = self.server.address
        settings = self.config.safe_summary() | {"metricsAddr": f"{host}:{port}"}
        log.info("image-clone controller starting", extra=fields(version=__version__, identity=self.identity,
                                                                 **settings))
        self.events.start()
        self._elector_thread.start()
        while not self._stop.wait(1.0):
            pass
        return self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _campaign(self) -> None:
        """Campaign, lead, and after losing the lease stop all work and campaign again."""
        while not self._stop.is_set():
            self.elector.run(self._stop)
            if self._stop.is_set():
                return
            # Lost the lease (it could not be renewed in time): no more work until we win it again.
            self.metrics.leader.set(0)
            self._stop_work()
            self.controller = self._new_controller()
            self.elector.reset()
            log.info("stopped all work after losing the lease; campaigning again")

    def _start_leading(self) -> None:
        self.service.resume_copies()
        self.metrics.leader.set(1)
        self.metrics.leader_transitions.inc()
        self.controller.start()

    def _stop_work(self) -> None:
        if not self.controller.started:
            return
        started = time.monotonic()
        cancelled = self.service.cancel_copies()
        finished = self.controller.stop(SHUTDOWN_GRACE)
        log.info("work stopped", extra=fields(seconds=round(time.monotonic() - started, 3), clean=finished,
                                              copiesCancelled=cancelled))

    def _shutdown(self) -> int:
        self.metrics.leader.set(0)
        self._stop_work()
        self.events.stop()
        self._elector_thread.join(LEASE_TIMEOUTS.connect + LEASE_TIMEOUTS.read + 1)
        self.elector.release()
        self.server.stop()
        log.info("stopped", extra=fields(signal=self._stopped_by_signal))
        return 0

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop.is_set():
                # The operator insists (or the shutdown hangs): no lease release, no event flush.
                killed = self.service.cancel_copies()
                log.warning("second signal received, exiting at once",
                            extra=fields(signal=name, copiesCancelled=killed))
                os._exit(EXIT_FORCED)
            log.info("signal received, shutting down; a second signal exits at once", extra=fields(signal=name))
            self._stopped_by_signal = True
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

