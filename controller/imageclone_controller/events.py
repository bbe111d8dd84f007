"""Kubernetes Events on workloads (core/v1, reportingComponent ``image-clone``), de-duplicated.

``record`` never blocks a reconcile: it drops the event into a bounded buffer
that one sender thread drains (a full buffer drops and counts). Per object and
reason, the first event is created at once; repeats within ``interval``
seconds only bump a local count; the next one after the interval PATCHes the
same Event with the new count, message and ``lastTimestamp`` (like client-go's
correlator), so a workload retried every few seconds cannot flood etcd.
Messages pass through the log redactor and are cut to 1024 characters.
"""
from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from imageclone_controller.engine import kube
from imageclone_controller.log import fields

log = logging.getLogger("imageclone.events")

COMPONENT: Final = "image-clone"
EVENT: Final = kube.Resource("Event", "v1", "events")
MESSAGE_LIMIT: Final = 1024
NORMAL: Final = "Normal"
WARNING: Final = "Warning"


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str

    def as_involved_object(self) -> dict[str, str]:
        return {"kind": self.kind, "apiVersion": self.api_version, "namespace": self.namespace,
                "name": self.name, "uid": self.uid}


@dataclass
class _Seen:
    name: str
    count: int
    last_sent: float


@dataclass(frozen=True)
class _Pending:
    ref: ObjectRef
    type: str
    reason: str
    message: str
    at: float


class EventRecorder:
    def __init__(
        self,
        api: Any,
        instance: str,
        *,
        interval: float = 300.0,
        redact: Callable[[str], str] = lambda text: text,
        on_sent: Callable[[str, str], None] = lambda type_, reason: None,
        on_suppressed: Callable[[str], None] = lambda cause: None,
        buffer: int = 1000,
        remembered: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._instance = instance
        self._interval = interval
        self._redact = redact
        self._on_sent = on_sent
        self._on_suppressed = on_suppressed
        self._clock = clock
        self._buffer: queue.Queue[_Pending | None] = queue.Queue(buffer)
        self._seen: OrderedDict[tuple[str, str, str], _Seen] = OrderedDict()
        self._remembered = remembered
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is buffered (within ``timeout``), then stop."""
        if self._thread is None:
            return
        try:
            self._buffer.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def record(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        pending = _Pending(ref, type_, reason, message, self._clock())
        try:
            self._buffer.put_nowait(pending)
        except queue.Full:
            self._on_suppressed("buffer_full")

    # -- sender ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            pending = self._buffer.get()
            if pending is None:
                return
            try:
                self.send(pending)
            except Exception as error:  # noqa: BLE001 - an event is never worth a crash
                log.warning("could not send an event", extra=fields(
                    object=f"{pending.ref.kind}/{pending.ref.namespace}/{pending.ref.name}",
                    reason=pending.reason, error=str(error)))

    def send(self, pending: _Pending) -> None:
        """Create, patch or suppress one event (the sender thread's job; public for tests)."""
        ref = pending.ref
        key = (ref.uid or f"{ref.namespace}/{ref.name}", pending.type, pending.reason)
        message = self._redact(pending.message)
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT - 3] + "..."
        stamp = _timestamp(pending.at)
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            seen.count += 1
            if pending.at - seen.last_sent < self._interval:
                self._on_suppressed("repeat")
                return
            patch = {"count": seen.count, "message": message, "lastTimestamp": stamp}
            try:
                self._api.patch(EVENT, ref.namespace, seen.name, patch, patch_type="merge")
                seen.last_sent = pending.at
                self._on_sent(pending.type, pending.reason)
                return
            except kube.KubeApiError as error:
                if not error.not_found:  # expired (events live an hour by default): create anew
                    raise
        name = f"{ref.name}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": ref.as_involved_object(),
            "reason": pending.reason,
            "message": message,
            "type": pending.type,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1 if seen is None else seen.count,
        }
        self._api.create(EVENT, ref.namespace, body)
        self._seen[key] = _Seen(name, 1 if seen is None else seen.count, pending.at)
        while len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        self._on_sent(pending.type, pending.reason)


def _timestamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
