"""Concurrency primitives for copies: single flight per key, bounded work per key."""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Run ``work`` once per key at a time: concurrent callers with the same key share one result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[Hashable, Future[T]] = {}

    def do(self, key: Hashable, work: Callable[[], T]) -> T:
        """Return ``work()``'s result, or the result of the call already running for ``key``."""
        with self._lock:
            future = self._inflight.get(key)
            leader = future is None
            if leader:
                future = Future()
                self._inflight[key] = future
        if future is None:  # unreachable: narrows the type for checkers
            raise AssertionError("SingleFlight lost its future")
        if not leader:
            return future.result()
        try:
            future.set_result(work())
        except BaseException as error:  # the waiters must see the leader's failure too
            future.set_exception(error)
        finally:
            with self._lock:
                del self._inflight[key]
        return future.result()


class KeyedLimiter:
    """At most ``limit`` holders per key (e.g. concurrent copies from one registry)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._lock = threading.Lock()
        self._semaphores: dict[Hashable, threading.BoundedSemaphore] = {}

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._lock:
            semaphore = self._semaphores.setdefault(key, threading.BoundedSemaphore(self._limit))
        with semaphore:
            yield
