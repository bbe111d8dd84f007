"""The informer cache: per workload, only what reconciling it needs, as compact JSON bytes.

A full Deployment as the API returns it (managedFields, status, the
last-applied annotation...) takes tens of kilobytes once parsed; 10,000 of
them would not fit the controller's memory budget. Each entry is the engine's
``workloads.projection`` of the object (what its workload reader reads), as
sorted, compact JSON (a few hundred bytes), with the resourceVersion beside
it so that a status-only update (new resourceVersion, same projection) is
recognised as "nothing to do" without a reconcile.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from imageclone_controller.engine import workloads


def object_key(kind: str, namespace: str, name: str) -> str:
    """``Kind/namespace/name``, the same string as the engine's ``Workload.key``."""
    return f"{kind}/{namespace}/{name}"


class Entry:
    """One cached workload: its resourceVersion and its projection as JSON bytes."""

    __slots__ = ("resource_version", "body")

    def __init__(self, resource_version: str, body: bytes) -> None:
        self.resource_version = resource_version
        self.body = body

    def object(self) -> dict[str, Any]:
        """The projection as a fresh dict, resourceVersion included (for a conditional patch)."""
        obj = json.loads(self.body)
        obj["metadata"]["resourceVersion"] = self.resource_version
        return obj


class Store:
    """Thread-safe ``key -> Entry`` map for one kind."""

    def __init__(self, kind: workloads.Kind) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}

    def encode(self, obj: Mapping[str, Any]) -> tuple[str, Entry]:
        metadata = _mapping(obj.get("metadata"))
        key = object_key(self.kind.name, str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        body = json.dumps(workloads.projection(self.kind, obj), sort_keys=True, separators=(",", ":")).encode()
        return key, Entry(str(metadata.get("resourceVersion") or ""), body)

    def upsert(self, obj: Mapping[str, Any]) -> tuple[str, bool]:
        """Store ``obj``; returns its key and whether what reconciling sees of it changed."""
        key, entry = self.encode(obj)
        with self._lock:
            previous = self._entries.get(key)
            self._entries[key] = entry
        return key, previous is None or previous.body != entry.body

    def delete(self, obj: Mapping[str, Any]) -> str:
        metadata = _mapping(obj.get("metadata"))
        key = object_key(self.kind.name, str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        with self._lock:
            self._entries.pop(key, None)
        return key

    def replace(self, entries: dict[str, Entry]) -> tuple[list[str], list[str]]:
        """Swap in a full relist; returns (keys new or changed, keys gone)."""
        with self._lock:
            previous, self._entries = self._entries, entries
        changed = [key for key, entry in entries.items()
                   if (old := previous.get(key)) is None or old.body != entry.body]
        gone = [key for key in previous if key not in entries]
        return changed, gone

    def get(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
