"""List-then-watch for one workload kind, feeding the cache and the work queue (client-go's reflector).

The engine's ``KubeApi`` does the requests (``list_page``, ``watch``, their
timeouts and error mapping); this module keeps what makes an informer:

* LIST page by page, projecting each page into the cache at once, so a
  10,000-object cluster never sits in memory whole.
* WATCH from the list's resourceVersion with bookmarks; bookmarks only
  advance the resourceVersion.
* ``410 Gone`` (as an HTTP status or an ``ERROR`` event) means the
  resourceVersion is too old: relist, diff against the cache, enqueue what
  changed and report what disappeared.
* Connection failures (the API server restarting) reconnect with capped
  exponential backoff and jitter, resuming from the last resourceVersion.

One informer watches one kind cluster-wide (``namespace=None``) or in one
namespace. Cluster-wide, namespaces that are never processed (kube-system,
``--ignoreNamespace``) are filtered out by the API server with a field selector.
"""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Collection
from typing import Any, Final

from imageclone_controller.cache import Entry, Store
from imageclone_controller.engine import kube, workloads
from imageclone_controller.log import fields
from imageclone_controller.workqueue import RetryPolicy

log = logging.getLogger("imageclone.informer")

RECONNECT: Final = RetryPolicy(0.5, 16.0)
# The server ends each watch after a random 5-10 minutes (like client-go).
WATCH_SECONDS: Final = (300, 600)


class Informer:
    """Keeps ``store`` in sync with the API server for one kind and calls back on changes."""

    def __init__(
        self,
        api: kube.KubeApi,
        kind: workloads.Kind,
        *,
        on_change: Callable[[str], None],
        on_delete: Callable[[str], None],
        namespace: str | None = None,
        ignore_namespaces: Collection[str] = (),
        on_restart: Callable[[str, str], None] | None = None,
    ) -> None:
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.name = kind.name if namespace is None else f"{kind.name}/{namespace}"
        self.store = Store(kind)
        self._on_change = on_change
        self._on_delete = on_delete
        self._on_restart = on_restart or (lambda kind, cause: None)
        ignored = sorted({*workloads.ALWAYS_IGNORED_NAMESPACES, *ignore_namespaces}) if namespace is None else ()
        self._field_selector = ",".join(f"metadata.namespace!={ignored_ns}" for ignored_ns in ignored)
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._stream: kube.WatchStream | None = None
        self._thread: threading.Thread | None = None
        self.resource_version = ""

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        failures = 0
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                    self._synced.set()
                resource_version = self._watch(resource_version)
                failures = 0
            except kube.KubeApiError as error:
                if self._stop.is_set():
                    break
                if error.expired:
                    log.info("watch expired, relisting", extra=fields(informer=self.name))
                    self._on_restart(self.name, "expired")
                    resource_version = None
                    continue
                if resource_version is not None:
                    resource_version = self.resource_version or resource_version  # resume after the last event
                failures += 1
                delay = RECONNECT.delay(failures) * random.uniform(0.8, 1.2)
                self._on_restart(self.name, "error")
                log.warning("list/watch failed, retrying", extra=fields(
                    informer=self.name, error=str(error), retryInSeconds=round(delay, 2), attempt=failures))
                self._stop.wait(delay)

    # -- list --------------------------------------------------------------------------

    def _relist(self) -> str:
        entries: dict[str, Entry] = {}
        page = kube.Page([], "", None)
        while True:
            try:
                page = self.api.list_page(self.kind, self.namespace, continue_token=page.next,
                                          field_selector=self._field_selector)
            except kube.KubeApiError as error:
                if not (error.expired and page.next):
                    raise
                log.info("list continuation expired, listing again", extra=fields(informer=self.name))
                entries, page = {}, kube.Page([], "", None)
                continue
            for item in page.items:
                key, entry = self.store.encode(item)
                entries[key] = entry
            if page.next is None:
                break
        changed, gone = self.store.replace(entries)
        self.resource_version = page.resource_version
        log.info("listed", extra=fields(informer=self.name, objects=len(entries), changed=len(changed),
                                        gone=len(gone), resourceVersion=page.resource_version))
        for key in gone:
            self._on_delete(key)
        for key in changed:
            self._on_change(key)
        return page.resource_version

    # -- watch -------------------------------------------------------------------------

    def _watch(self, resource_version: str) -> str:
        """Stream events until the server ends the watch; returns the last resourceVersion seen."""
        with self.api.watch(self.kind, self.namespace, resource_version, timeout_seconds=random.randint(*WATCH_SECONDS),
                            field_selector=self._field_selector) as stream:
            self._stream = stream
            try:
                if self._stop.is_set():
                    return resource_version
                for event in stream:
                    if self._stop.is_set():
                        break
                    resource_version = self._handle(event, resource_version)
            finally:
                self._stream = None
        return resource_version

    def _handle(self, event: dict[str, Any], resource_version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        latest = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
        if kind in ("ADDED", "MODIFIED"):
            key, changed = self.store.upsert(obj)
            if changed:
                self._on_change(key)
        elif kind == "DELETED":
            self._on_delete(self.store.delete(obj))
        self.resource_version = latest
        return latest
