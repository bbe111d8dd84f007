"""A rate-limited work queue with client-go semantics, keyed by ``Kind/namespace/name``.

* **De-duplication**: a key added while it already waits is queued once.
* **No concurrent processing of one key**: a key added while a worker holds it
  is queued again when that worker calls ``done``, never handed to a second worker.
* **Delays**: ``add_after`` parks a key until its time; an immediate ``add``
  supersedes the parked retry (the processing it triggers decides what comes next).
* **Per-key exponential backoff**: ``add_rate_limited(key, policy)`` waits
  ``policy.delay(n)`` after the n-th consecutive failure; ``forget`` resets it.

Everything is guarded by one condition variable; ``get`` blocks until a key is
ready or the queue shuts down.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class RetryPolicy:
    """``base * 2**(failures-1)`` seconds, capped at ``cap``: 5, 10, 20... for base 5."""

    base: float
    cap: float

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"need 0 < base <= cap, got base={self.base} cap={self.cap}")

    def delay(self, failures: int) -> float:
        if failures < 1:
            return 0.0
        # 2**64 seconds is far past any cap; the exponent bound keeps the float finite.
        return min(self.cap, self.base * 2.0 ** min(failures - 1, 64))

    def schedule(self, count: int) -> list[float]:
        """The first ``count`` delays, for docs and tests."""
        return [self.delay(n) for n in range(1, count + 1)]


# API trouble, conflicts, registry hiccups: retry soon, then back off to 5 minutes.
TRANSIENT: Final = RetryPolicy(1.0, 300.0)
# An image that does not exist upstream will not appear in a second: slow retries up to 10 minutes.
MISSING_IMAGE: Final = RetryPolicy(5.0, 600.0)


class RateLimiter(Generic[K]):
    """Counts consecutive failures per key and turns them into delays."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[K, int] = {}

    def when(self, key: K, policy: RetryPolicy) -> float:
        with self._lock:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        return policy.delay(failures)

    def failures(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)


@dataclass(frozen=True)
class Item(Generic[K]):
    """A key handed to a worker, with when it was first queued (``clock`` time)."""

    key: K
    queued_at: float


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: dict[K, float] = {}  # waiting to be processed -> first queued at
        self._processing: set[K] = set()
        self._parked: dict[K, float] = {}  # key -> ready at
        self._heap: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()
        self._shutting_down = False
        self.limiter: RateLimiter[K] = RateLimiter()
        self.adds = 0
        self.retries = 0

    # -- producers ---------------------------------------------------------------------

    def add(self, key: K) -> None:
        with self._cond:
            self._parked.pop(key, None)
            self._add_locked(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending time for it wins."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            ready = self._clock() + delay
            current = self._parked.get(key)
            if current is not None and current <= ready:
                return
            self._parked[key] = ready
            heapq.heappush(self._heap, (ready, next(self._sequence), key))
            self._cond.notify()

    def add_rate_limited(self, key: K, policy: RetryPolicy = TRANSIENT, at_least: float = 0.0) -> float:
        """Queue ``key`` after its next backoff delay under ``policy`` (and no sooner than
        ``at_least`` seconds, e.g. a registry's throttling window); returns that delay."""
        delay = max(self.limiter.when(key, policy), at_least)
        with self._cond:
            self.retries += 1
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded (or is gone): its next failure starts the backoff over."""
        self.limiter.forget(key)

    def discard(self, key: K) -> None:
        """Drop a parked retry of ``key`` (the object was deleted)."""
        with self._cond:
            self._parked.pop(key, None)
        self.limiter.forget(key)

    # -- consumers ---------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Item[K] | None:
        """The next ready key, marked as processing; None on shutdown or after ``timeout``."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._shutting_down:
                    return None
                wait = self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    queued_at = self._dirty.pop(key)
                    self._processing.add(key)
                    return Item(key, queued_at)
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: K) -> None:
        """The worker is finished with ``key``; if it changed meanwhile it is queued again now."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()

    # -- inspection --------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready and waiting for a worker (the queue depth)."""
        with self._cond:
            return len(self._queue)

    @property
    def parked(self) -> int:
        """Keys waiting for a delayed retry."""
        with self._cond:
            return len(self._parked)

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._processing)

    def is_parked(self, key: K) -> bool:
        with self._cond:
            return key in self._parked

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    # -- internals ---------------------------------------------------------------------

    def _add_locked(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self.adds += 1
        self._dirty[key] = self._clock()
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def _promote_due_locked(self) -> float | None:
        """Move parked keys whose time has come to the queue; seconds until the next one, if any."""
        now = self._clock()
        while self._heap:
            ready, _, key = self._heap[0]
            if self._parked.get(key) != ready:
                heapq.heappop(self._heap)  # superseded by an add or an earlier time
                continue
            if ready > now:
                return ready - now
            heapq.heappop(self._heap)
            del self._parked[key]
            self._add_locked(key)
        return None
