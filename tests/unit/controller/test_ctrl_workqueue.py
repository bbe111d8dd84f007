"""The work queue: de-duplication, one worker per key, delays, per-key exponential backoff."""
from __future__ import annotations

import threading
import time

import pytest

from imageclone_controller.workqueue import MISSING_IMAGE, TRANSIENT, RetryPolicy, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(queue: WorkQueue) -> list[str]:
    keys = []
    while (item := queue.get(timeout=0)) is not None:
        keys.append(item.key)
        queue.done(item.key)
    return keys


def test_a_key_added_twice_is_processed_once():
    queue = WorkQueue()
    for key in ("Deployment/a/x", "Deployment/a/y", "Deployment/a/x"):
        queue.add(key)
    assert len(queue) == 2
    assert drain(queue) == ["Deployment/a/x", "Deployment/a/y"]
    assert queue.adds == 2


def test_a_key_changed_while_processing_is_queued_again_after_done_not_handed_to_another_worker():
    queue = WorkQueue()
    queue.add("k")
    item = queue.get(timeout=0)
    queue.add("k")
    queue.add("k")
    assert queue.get(timeout=0) is None  # not while a worker holds it
    queue.done(item.key)
    again = queue.get(timeout=0)
    assert again is not None and again.key == "k"
    queue.done("k")
    assert queue.get(timeout=0) is None


def test_get_reports_when_the_key_was_first_queued():
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add("k")
    clock.now += 5
    queue.add("k")
    assert queue.get(timeout=0).queued_at == 1000.0


def test_add_after_waits_and_the_earliest_time_wins():
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("late", 10)
    queue.add_after("soon", 2)
    queue.add_after("late", 30)  # later than pending: ignored
    assert queue.get(timeout=0) is None and queue.parked == 2
    clock.now += 2
    assert drain(queue) == ["soon"]
    clock.now += 8
    assert drain(queue) == ["late"]
    assert queue.parked == 0


def test_an_immediate_add_supersedes_a_parked_retry():
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("k", 60)
    queue.add("k")
    assert drain(queue) == ["k"]
    clock.now += 61
    assert drain(queue) == []  # the parked retry is gone


def test_rate_limited_retries_back_off_exponentially_per_key_and_forget_resets():
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    delays = [queue.add_rate_limited("missing", MISSING_IMAGE) for _ in range(4)]
    assert delays == [5.0, 10.0, 20.0, 40.0]
    assert queue.add_rate_limited("other", TRANSIENT) == 1.0  # independent per key
    queue.forget("missing")
    assert queue.add_rate_limited("missing", MISSING_IMAGE) == 5.0
    assert queue.add_rate_limited("slow", TRANSIENT, at_least=90) == 90  # a registry's throttling window
    assert queue.retries == 7


def test_get_blocks_until_a_parked_key_is_due():
    queue = WorkQueue()
    queue.add_after("k", 0.2)
    started = time.monotonic()
    item = queue.get(timeout=5)
    assert item is not None and 0.15 <= time.monotonic() - started < 2


def test_shutdown_wakes_blocked_workers():
    queue = WorkQueue()
    results = []
    workers = [threading.Thread(target=lambda: results.append(queue.get())) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(0.05)
    queue.shutdown()
    for worker in workers:
        worker.join(2)
    assert results == [None, None, None]
    queue.add("k")
    assert len(queue) == 0


def test_many_threads_never_process_one_key_concurrently():
    queue = WorkQueue()
    active, overlaps, processed = set(), [], []
    lock = threading.Lock()

    def worker():
        while (item := queue.get(timeout=0.5)) is not None:
            with lock:
                if item.key in active:
                    overlaps.append(item.key)
                active.add(item.key)
            time.sleep(0.001)
            with lock:
                active.discard(item.key)
                processed.append(item.key)
            queue.done(item.key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for number in range(400):
        queue.add(f"k{number % 5}")
    for thread in threads:
        thread.join(5)
    assert not overlaps
    assert set(processed) == {f"k{n}" for n in range(5)}
    assert len(processed) < 400  # de-duplicated


def test_retry_schedules():
    assert MISSING_IMAGE.schedule(9) == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    assert TRANSIENT.schedule(10)[-1] == 300 and TRANSIENT.schedule(3) == [1, 2, 4]
    assert MISSING_IMAGE.delay(10_000) == 600  # no overflow
    assert MISSING_IMAGE.delay(0) == 0
    with pytest.raises(ValueError):
        RetryPolicy(10, 5)
    with pytest.raises(ValueError):
        RetryPolicy(0, 5)
