"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.

* A candidate takes the Lease when it does not exist, has no holder, or its
  record has not changed for ``leaseDurationSeconds`` as measured on *our*
  monotonic clock since we first saw that record (no trust in other
  machines' clocks, exactly like client-go).
* A term lasts ``renew_deadline`` from the start of the last successful
  acquire or renewal (started, not finished: the record a rival watches
  changed after that instant). The leader renews every ``retry_period``;
  each attempt is abandoned when the term runs out, however long its request
  hangs, and the term then ends: ``leading`` turns false and ``ensure_leading``
  refuses writes. A rival can only take the Lease ``lease_duration`` after it
  saw our last renewal, which is later than our term's end by at least
  ``lease_duration - renew_deadline``: there are never two leaders at once.
* Writes are conditional on resourceVersion, so two candidates never both win.
* ``release`` (on SIGTERM) clears ``holderIdentity`` and sets
  ``leaseDurationSeconds`` to 1, so a standby takes over on its next try
  instead of waiting for expiry.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as AttemptTimedOut
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from imageclone_controller.engine import kube
from imageclone_controller.log import fields

log = logging.getLogger("imageclone.leader")

LEASE: Final = kube.Resource("Lease", "coordination.k8s.io/v1", "leases")
LEASE_DURATION: Final = 15.0
RENEW_DEADLINE: Final = 10.0
RETRY_PERIOD: Final = 2.0
JITTER: Final = 1.2
REPEAT_LOG: Final = 300.0


@dataclass(frozen=True)
class Timing:
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period * JITTER > 0:
            raise ValueError("need lease duration > renew deadline > retry period * 1.2 > 0")


def micro_time(at: datetime | None = None) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return (at or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        identity: str,
        *,
        timing: Timing = Timing(),
        on_started_leading: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self._on_started = on_started_leading
        self._clock = clock
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._leading = threading.Event()
        self._lost = threading.Event()
        self._lock = threading.Lock()
        self._term_ends = 0.0
        self._logged_at = 0.0
        # The last lease request's failure (a lost race aside), or None once one succeeds.
        self.last_error: kube.KubeApiError | None = None
        # Lease requests run here so that a hung one never holds the loop past the term's end.
        self._attempts = ThreadPoolExecutor(1, thread_name_prefix="lease")
        self.observed_holder: str | None = None

    @property
    def leading(self) -> bool:
        """Whether we lead now: elected, and the term not run out (even while a renewal hangs)."""
        return self._leading.is_set() and self._clock() < self._term_ends

    def ensure_leading(self, verb: str, target: str) -> None:
        """The write guard of the controller's API clients: refuse any write outside our term."""
        if not self.leading:
            raise kube.KubeApiError(verb, target, None, "NotLeader",
                                    f"not sent: {self.identity} does not hold the lease "
                                    f"{self.namespace}/{self.name} (any more)")

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def wait_leading(self, timeout: float | None = None) -> bool:
        return self._leading.wait(timeout)

    # -- the loop ----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget a lost term, before campaigning again."""
        self._lost.clear()

    def run(self, stop: threading.Event) -> None:
        """Campaign until leader (or ``stop``), then renew until the lease is lost (``lost``) or ``stop``."""
        log.info("campaigning for the lease", extra=fields(lease=f"{self.namespace}/{self.name}",
                                                          identity=self.identity))
        while not stop.is_set():
            started = self._clock()
            if self._attempt(None):
                self._term_ends = started + self.timing.renew_deadline
                break
            stop.wait(self.timing.retry_period * random.uniform(1.0, JITTER))
        if stop.is_set():
            return
        self._leading.set()
        log.info("became leader", extra=fields(lease=f"{self.namespace}/{self.name}", identity=self.identity))
        self._on_started()
        pause = self.timing.retry_period
        while not stop.wait(max(0.0, min(pause, self._term_ends - self._clock()))):
            started = self._clock()
            if started < self._term_ends and self._attempt(self._term_ends - started):
                self._term_ends = started + self.timing.renew_deadline
                pause = self.timing.retry_period
                continue
            if self._clock() >= self._term_ends:
                self._leading.clear()
                self._lost.set()
                log.error("leader lease lost: could not renew it within the renew deadline",
                          extra=fields(lease=f"{self.namespace}/{self.name}", identity=self.identity,
                                       renewDeadlineSeconds=self.timing.renew_deadline))
                return
            pause = self.timing.retry_period / 2  # a failed renewal is retried sooner

    def _attempt(self, within: float | None) -> bool:
        """One acquire-or-renew, abandoned (False) after ``within`` seconds; the request may finish later."""
        attempt = self._attempts.submit(self.try_acquire_or_renew)
        try:
            return attempt.result(timeout=within)
        except AttemptTimedOut:
            log.warning("lease renewal did not finish before the term's end",
                        extra=fields(lease=f"{self.namespace}/{self.name}", waitedSeconds=round(within or 0, 3)))
            return False

    # -- one round ---------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards. Never raises for API trouble."""
        with self._lock:
            try:
                held = self._try()
            except kube.KubeApiError as error:
                self._failed(error)
                return False
        if self.last_error is not None:
            log.info("the lease is reachable again", extra=fields(lease=f"{self.namespace}/{self.name}"))
        self.last_error = None
        return held

    def _failed(self, error: kube.KubeApiError) -> None:
        """Log a failure when it is new, and a persisting one every ``REPEAT_LOG`` seconds, not every try."""
        if error.conflict:  # a rival wrote first: the normal race
            log.debug("lease update lost a race", extra=fields(lease=f"{self.namespace}/{self.name}"))
            return
        now = self._clock()
        repeated = self.last_error is not None and str(self.last_error) == str(error)
        self.last_error = error
        if repeated and now - self._logged_at < REPEAT_LOG:
            return
        self._logged_at = now
        hint = (f"; the controller's ServiceAccount needs get, create and update on leases in namespace "
                f"{self.namespace}" if error.forbidden else "")
        log.error("lease update failed" + (" (still)" if repeated else ""),
                  extra=fields(lease=f"{self.namespace}/{self.name}", error=f"{error}{hint}"))

    def _try(self) -> bool:
        now = micro_time()
        try:
            lease = self._api.get(LEASE, self.namespace, self.name)
        except kube.KubeApiError as error:
            if not error.not_found:
                raise
            self._api.create(LEASE, self.namespace, {
                "apiVersion": LEASE.api_version, "kind": LEASE.name,
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, acquire_time=now, transitions=0),
            })
            self._observe((self.identity, now), self.identity)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("acquireTime"), spec.get("leaseDurationSeconds"))
        self._observe(record, holder)
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
            if self._clock() < self._observed_at + duration:
                return False  # held, and not expired by our clock
        ours = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        acquire_time = str(spec["acquireTime"]) if ours and spec.get("acquireTime") else now
        lease["spec"] = self._spec(now, acquire_time=acquire_time, transitions=transitions)
        stored = self._api.replace(LEASE, self.namespace, self.name, lease)
        spec = stored.get("spec") or {}
        self._observe((self.identity, spec.get("renewTime"), spec.get("acquireTime"),
                       spec.get("leaseDurationSeconds")), self.identity)
        if not ours:
            log.info("took the lease", extra=fields(lease=f"{self.namespace}/{self.name}",
                                                    previousHolder=holder or None, transitions=transitions))
        return True

    def _spec(self, now: str, *, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.timing.lease_duration),
                "acquireTime": acquire_time, "renewTime": now, "leaseTransitions": transitions}

    def _observe(self, record: tuple[Any, ...], holder: str) -> None:
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = self._clock()
        self.observed_holder = holder or None

    # -- release -----------------------------------------------------------------------

    def release(self) -> bool:
        """Give the lease up if we hold it, so a standby takes over at once; True when released."""
        if not self._leading.is_set():  # elected: release even if the term just lapsed, we may still hold it
            return False
        self._leading.clear()
        with self._lock:
            try:
                lease = self._api.get(LEASE, self.namespace, self.name)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return False
                now = micro_time()
                spec.update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now,
                             "acquireTime": now})
                lease["spec"] = spec
                self._api.replace(LEASE, self.namespace, self.name, lease)
            except kube.KubeApiError as error:
                log.warning("could not release the lease; a standby takes over when it expires",
                            extra=fields(lease=f"{self.namespace}/{self.name}", error=str(error)))
                return False
        log.info("released the lease", extra=fields(lease=f"{self.namespace}/{self.name}"))
        return True
