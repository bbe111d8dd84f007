"""The informer cache: per workload, only what reconciling it needs, as compact JSON bytes.

A full Deployment as the API returns it (managedFields, status, the
last-applied annotation...) takes tens of kilobytes once parsed; 10,000 of
them would not fit the controller's memory budget. ``project`` keeps what the
engine's ``workload_from_object`` reads: identity, labels, the annotations the
engine and image-clone use, the controller ownerReference, and per pod-spec
section each container's name and image plus ``imagePullSecrets``. The entry
is stored as sorted, compact JSON (a few hundred bytes), with the
resourceVersion beside it so that a status-only update (new resourceVersion,
same projection) is recognised as "nothing to do" without a reconcile.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Final

from imageclone_controller.engine import rewrite, workloads

# Annotations reconciling can depend on; the rest (last-applied-configuration...) is dropped.
KEPT_ANNOTATIONS: Final = frozenset({workloads.SKIP_ANNOTATION, rewrite.ORIGINAL_IMAGES,
                                     *workloads.ARGOCD_ANNOTATIONS})
KEPT_ANNOTATION_PREFIX: Final = "imageclone.io/"


def object_key(kind: str, namespace: str, name: str) -> str:
    """``Kind/namespace/name``, the same string as the engine's ``Workload.key``."""
    return f"{kind}/{namespace}/{name}"


def project(kind: workloads.Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``obj`` that ``workloads.workload_from_object`` and a rewrite patch need."""
    metadata = _mapping(obj.get("metadata"))
    annotations = {key: value for key, value in _mapping(metadata.get("annotations")).items()
                   if key in KEPT_ANNOTATIONS or key.startswith(KEPT_ANNOTATION_PREFIX)}
    slim_metadata: dict[str, Any] = {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "uid": metadata.get("uid"),
    }
    if metadata.get("labels"):
        slim_metadata["labels"] = metadata["labels"]
    if annotations:
        slim_metadata["annotations"] = annotations
    references = metadata.get("ownerReferences")
    owner = next((ref for ref in (references if isinstance(references, list) else ()) if isinstance(ref, Mapping)
                  and ref.get("controller") is True), None)
    if owner is not None:
        slim_metadata["ownerReferences"] = [{"kind": owner.get("kind"), "name": owner.get("name"),
                                             "controller": True}]
    slim: dict[str, Any] = {"metadata": slim_metadata}
    spec = _walk(obj, kind.pod_spec_path)
    if isinstance(spec, Mapping):
        slim_spec: dict[str, Any] = {}
        for section in workloads.SECTIONS:
            entries = spec.get(section)
            if isinstance(entries, list):
                slim_spec[section] = [
                    {key: entry[key] for key in ("name", "image") if key in entry} if isinstance(entry, Mapping)
                    else entry for entry in entries
                ]
        if "imagePullSecrets" in spec:
            slim_spec["imagePullSecrets"] = spec["imagePullSecrets"]
        node = slim
        *parents, last = kind.pod_spec_path
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = slim_spec
    return slim


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
        body = json.dumps(project(self.kind, obj), sort_keys=True, separators=(",", ":")).encode()
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


def _walk(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = obj
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
