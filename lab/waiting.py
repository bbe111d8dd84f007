"""The one bounded wait of the lab, the tests and the benchmarks.

Everything the harness waits for (a component to answer, a controller to rewrite a workload,
a pod to run) is a probe asked again until it holds; when time runs out, the failure names what
was awaited and, where the caller can tell, what was seen instead (a log's last lines, the pods).
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.1,
             explain: Callable[[], str] | None = None) -> T:
    """``probe()``'s first truthy value, asked every ``interval`` seconds (at least once).

    After ``timeout`` seconds, a ``TimeoutError`` naming ``what``, followed by ``explain()`` when given.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g}s waiting for {what}"
            raise TimeoutError(f"{message}\n{explain()}" if explain else message)
        time.sleep(interval)
