"""SingleFlight and KeyedLimiter: the copy path's concurrency guarantees."""
from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.concurrency import KeyedLimiter, SingleFlight


def run_together(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results: list = []

    def worker(index: int) -> None:
        barrier.wait()
        results.append(target(index))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_calls_with_one_key_run_the_work_once():
    flight: SingleFlight[int] = SingleFlight()
    calls = []

    def work() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    assert run_together(8, lambda _: flight.do("nginx", work)) == [42] * 8
    assert len(calls) == 1


def test_different_keys_do_not_wait_for_each_other():
    flight: SingleFlight[str] = SingleFlight()
    calls = []
    run_together(4, lambda i: flight.do(i, lambda: calls.append(i) or str(i)))
    assert sorted(calls) == [0, 1, 2, 3]


def test_a_failure_reaches_every_waiter_and_the_key_is_released():
    flight: SingleFlight[int] = SingleFlight()

    def fail() -> int:
        time.sleep(0.1)
        raise RuntimeError("copy failed")

    def call(_):
        try:
            return flight.do("k", fail)
        except RuntimeError as error:
            return str(error)

    assert run_together(5, call) == ["copy failed"] * 5
    assert flight.do("k", lambda: 7) == 7  # a later call runs again


def test_keyed_limiter_bounds_holders_per_key_only():
    limiter = KeyedLimiter(2)
    lock = threading.Lock()
    active: dict[str, int] = {"docker.io": 0, "quay.io": 0}
    peak: dict[str, int] = {"docker.io": 0, "quay.io": 0}

    def hold(index: int) -> None:
        registry = "docker.io" if index % 2 else "quay.io"
        with limiter.hold(registry):
            with lock:
                active[registry] += 1
                peak[registry] = max(peak[registry], active[registry])
            time.sleep(0.05)
            with lock:
                active[registry] -= 1

    run_together(10, hold)
    assert peak == {"docker.io": 2, "quay.io": 2}


def test_keyed_limiter_refuses_a_zero_limit():
    with pytest.raises(ValueError, match="at least 1"):
        KeyedLimiter(0)
