"""Wires everything together and owns the process lifecycle (controller-runtime's Manager).

Startup: build the engine's services from the config, serve /metrics /healthz
/readyz, campaign for the Lease. On becoming leader: start informers and
workers. On SIGTERM/SIGINT: stop taking work, let in-flight reconciles finish
(bounded), flush events, release the Lease so a standby takes over at once,
exit 0. On losing the Lease (not renewed within the renew deadline, e.g. the
API server is unreachable): stop informers and workers at once, drop the
cache, and campaign again as a standby; a new term starts from a fresh list.
"""
from __future__ import annotations

import copy
import logging
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
LEASE_REQUEST_TIMEOUT: Final = 5.0


class StartupError(Exception):
    """The controller cannot start (cluster configuration, engine options, listen address)."""


def identity() -> str:
    """Who we are in the Lease: the pod (host) name and a random suffix, unique per process."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:10]}"


def api_client_with_pool(base: Any, size: int) -> Any:
    """A copy of ``base`` (same server and credentials) with its own connection pool of ``size``."""
    from kubernetes.client import ApiClient

    configuration = copy.deepcopy(base.configuration)
    configuration.connection_pool_maxsize = size
    return ApiClient(configuration)


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
        except kube.KubeConfigError as error:
            raise StartupError(str(error)) from None
        self.kinds = [workloads.KINDS[name] for name in config.kinds]
        self.api = kube.KubeApi(api_client_with_pool(base, config.workers + 4))
        options = factory.BackupOptions.from_mapping(config.backup_options())
        service = factory.backup_service(options, dry_run=config.dry_run)
        ttl = min(config.resync, VERIFIED_TTL_MAX) if config.resync > 0 else VERIFIED_TTL_MAX
        self.backups = CachedBackups(service, ttl, on_checked=lambda outcome: self.metrics.images.inc(
            state=outcome.state))
        try:
            pull_secret = options.pull_secret(config.pull_secret) if config.pull_secret else None
        except ValueError as error:
            raise StartupError(str(error)) from None
        scope = migration.Scope.of(kinds=config.kinds, namespaces=config.namespaces or None,
                                   ignore_namespaces=config.ignore_namespaces)
        self.migration = migration.Migration(self.api, self.backups, scope, pull_secret)
        self.events = EventRecorder(
            kube.KubeApi(api_client_with_pool(base, 2)), self.identity, redact=redact,
            on_sent=lambda type_, reason: self.metrics.events.inc(type=type_, reason=reason),
            on_suppressed=lambda cause: self.metrics.events_suppressed.inc(cause=cause))
        self.registries = service.registry
        self._seen_registries: set[str] = {options.policy.target_registry}
        self._watch_client = api_client_with_pool(base, len(self.kinds) * max(1, len(config.namespaces)) + 1)
        self.controller = self._new_controller()
        self.elector = LeaderElector(
            kube.KubeApi(api_client_with_pool(base, 2), timeout=LEASE_REQUEST_TIMEOUT),
            config.leader_election_namespace, config.leader_election_id, self.identity,
            on_started_leading=self._start_leading)

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
        informers = make_informers(self._watch_client, self.kinds, queue, namespaces=config.namespaces,
                                   ignore_namespaces=config.ignore_namespaces, metrics=self.metrics)
        reconciler = Reconciler(
            self.migration, cache_lookup(informers), ignore_namespaces=config.ignore_namespaces,
            record_event=self.events.record, metrics=self.metrics, registry_backoff=self._registry_backoff,
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
        self.metrics.leader.set(1)
        self.metrics.leader_transitions.inc()
        self.controller.start()

    def _stop_work(self) -> None:
        if not self.controller.started:
            return
        started = time.monotonic()
        finished = self.controller.stop(SHUTDOWN_GRACE)
        log.info("work stopped", extra=fields(seconds=round(time.monotonic() - started, 3), clean=finished))

    def _shutdown(self) -> int:
        self.metrics.leader.set(0)
        self._stop_work()
        self.events.stop()
        self._elector_thread.join(LEASE_REQUEST_TIMEOUT + 1)
        self.elector.release()
        self.server.stop()
        log.info("stopped", extra=fields(signal=self._stopped_by_signal))
        return 0

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            log.info("signal received, shutting down", extra=fields(signal=signal.Signals(signum).name))
            self._stopped_by_signal = True
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _registry_backoff(self, registry: str) -> float:
        if self.registries is None:
            return 0.0
        until = self.registries.rate_limit_state(registry).backoff_until
        return max(0.0, until - time.time()) if until else 0.0
