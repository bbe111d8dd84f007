"""List-then-watch for one workload kind, feeding the cache and the work queue (client-go's reflector).

* LIST page by page (``limit``/``continue``), projecting each page into the
  cache at once, so a 10,000-object cluster never sits in memory whole.
* WATCH from the list's resourceVersion with ``allowWatchBookmarks``; the
  stream is read line by line through the engine's ApiClient
  (``_preload_content=False``). Bookmarks only advance the resourceVersion.
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

import json
import logging
import random
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any, Final

import urllib3
from kubernetes.client.exceptions import ApiException

from imageclone_controller.cache import Entry, Store
from imageclone_controller.engine import workloads
from imageclone_controller.log import fields
from imageclone_controller.workqueue import RetryPolicy

log = logging.getLogger("imageclone.informer")

PAGE_SIZE: Final = 500
RECONNECT: Final = RetryPolicy(0.5, 16.0)
CONNECT_TIMEOUT: Final = 10.0
LIST_TIMEOUT: Final = 60.0
# The server ends each watch after a random 5-10 minutes (like client-go); the read
# timeout (a silent dead connection) is a little longer than that plus bookmark gaps.
WATCH_SECONDS: Final = (300, 600)
READ_SLACK: Final = 60.0


class Expired(Exception):
    """The resourceVersion is too old (410 Gone): a relist is needed."""


class WatchFailed(Exception):
    """A list or watch failed; the message says how (no request headers, no credentials)."""


class Informer:
    """Keeps ``store`` in sync with the API server for one kind and calls back on changes."""

    def __init__(
        self,
        api_client: Any,
        kind: workloads.Kind,
        *,
        on_change: Callable[[str], None],
        on_delete: Callable[[str], None],
        namespace: str | None = None,
        ignore_namespaces: Collection[str] = (),
        on_restart: Callable[[str, str], None] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.api_client = api_client
        self.kind = kind
        self.namespace = namespace
        self.name = kind.name if namespace is None else f"{kind.name}/{namespace}"
        self.store = Store(kind)
        self._on_change = on_change
        self._on_delete = on_delete
        self._on_restart = on_restart or (lambda kind, cause: None)
        self._page_size = page_size
        ignored = sorted({*workloads.ALWAYS_IGNORED_NAMESPACES, *ignore_namespaces}) if namespace is None else ()
        self._field_selector = ",".join(f"metadata.namespace!={ignored_ns}" for ignored_ns in ignored)
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._response: Any = None
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
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the reading thread at once (urllib3 >= 2.3)
            except Exception:  # noqa: BLE001 - best effort: the daemon thread dies with us anyway
                pass

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
            except Expired:
                log.info("watch expired, relisting", extra=fields(informer=self.name))
                self._on_restart(self.name, "expired")
                resource_version = None
            except Exception as error:  # noqa: BLE001 - any failure: back off and resume
                if self._stop.is_set():
                    break
                if resource_version is not None:
                    resource_version = self.resource_version or resource_version  # resume after the last event
                failures += 1
                delay = RECONNECT.delay(failures) * random.uniform(0.8, 1.2)
                self._on_restart(self.name, "error")
                log.warning("list/watch failed, retrying", extra=fields(
                    informer=self.name, error=_describe(error), retryInSeconds=round(delay, 2),
                    attempt=failures))
                self._stop.wait(delay)

    # -- list --------------------------------------------------------------------------

    def _relist(self) -> str:
        entries: dict[str, Entry] = {}
        token = None
        while True:
            query: list[tuple[str, Any]] = [("limit", self._page_size)]
            if self._field_selector:
                query.append(("fieldSelector", self._field_selector))
            if token:
                query.append(("continue", token))
            try:
                page = self._get_json(query)
            except Expired:
                if token is None:
                    raise
                log.info("list continuation expired, listing again", extra=fields(informer=self.name))
                entries, token = {}, None
                continue
            for item in page.get("items") or ():
                key, entry = self.store.encode(item)
                entries[key] = entry
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                break
            del page  # one page at a time
        changed, gone = self.store.replace(entries)
        resource_version = str(metadata.get("resourceVersion") or "")
        self.resource_version = resource_version
        log.info("listed", extra=fields(informer=self.name, objects=len(entries), changed=len(changed),
                                        gone=len(gone), resourceVersion=resource_version))
        for key in gone:
            self._on_delete(key)
        for key in changed:
            self._on_change(key)
        return resource_version

    def _get_json(self, query: list[tuple[str, Any]]) -> dict[str, Any]:
        response = self._request(query, (CONNECT_TIMEOUT, LIST_TIMEOUT))
        try:
            document = json.loads(response.data)
        finally:
            response.release_conn()
        if not isinstance(document, dict):
            raise WatchFailed(f"list {self.kind.plural}: the answer is not a JSON object")
        return document

    # -- watch -------------------------------------------------------------------------

    def _watch(self, resource_version: str) -> str:
        """Stream events until the server ends the watch; returns the last resourceVersion seen."""
        seconds = random.randint(*WATCH_SECONDS)
        query: list[tuple[str, Any]] = [("watch", "true"), ("allowWatchBookmarks", "true"),
                                        ("resourceVersion", resource_version), ("timeoutSeconds", seconds)]
        if self._field_selector:
            query.append(("fieldSelector", self._field_selector))
        response = self._request(query, (CONNECT_TIMEOUT, seconds + READ_SLACK))
        self._response = response
        try:
            if self._stop.is_set():
                return resource_version
            for line in _lines(response):
                if self._stop.is_set():
                    break
                resource_version = self._handle(json.loads(line), resource_version)
        finally:
            self._response = None
            response.release_conn()
        return resource_version

    def _handle(self, event: dict[str, Any], resource_version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Expired()
            raise WatchFailed(f"watch {self.kind.plural}: {obj.get('reason')} ({code}): {obj.get('message')}")
        latest = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
        if kind in ("ADDED", "MODIFIED"):
            key, changed = self.store.upsert(obj)
            if changed:
                self._on_change(key)
        elif kind == "DELETED":
            self._on_delete(self.store.delete(obj))
        self.resource_version = latest
        return latest

    def _request(self, query: list[tuple[str, Any]], timeout: tuple[float, float]) -> Any:
        try:
            return self.api_client.call_api(
                self.kind.path(self.namespace), "GET", query_params=query, header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=timeout)
        except ApiException as error:
            if error.status == 410:
                raise Expired() from None
            raise WatchFailed(f"{self.kind.plural}: HTTP {error.status} {error.reason}: "
                              f"{_status_message(error.body)}") from None


def _lines(response: Any) -> Iterator[bytes]:
    """Complete lines of a chunked watch stream, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _status_message(body: Any) -> str:
    try:
        status = json.loads(body or b"")
    except ValueError:
        return "no details"
    return str(status.get("message") or "no details") if isinstance(status, dict) else "no details"


def _describe(error: Exception) -> str:
    if isinstance(error, urllib3.exceptions.HTTPError):
        return f"{type(error).__name__}: {str(getattr(error, 'reason', None) or error).split('): ', 1)[-1]}"
    return f"{type(error).__name__}: {error}" if not isinstance(error, WatchFailed) else str(error)
