"""What a workload object runs, as the tests and the benchmarks read it back from the API server.

The engine's ``KINDS`` says where each kind keeps its pod spec, so callers need the engine
importable (pytest-ansible does it for the tests, ``lab.collection.import_engine`` for the rest).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS

CONTAINER_SECTIONS = ("initContainers", "containers")


def pod_spec_of(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec inside ``obj``, a workload of ``kind`` (the object's own dict); ``{}`` if it has none."""
    node: Any = obj
    for key in KINDS[kind].pod_spec_path:
        node = (node or {}).get(key)
    return node or {}


def container_images(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """``container name -> image`` over the init and the regular containers of ``obj``."""
    spec = pod_spec_of(kind, obj)
    return {c["name"]: c["image"] for section in CONTAINER_SECTIONS for c in spec.get(section) or ()}


def images_patch(kind: str, images: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A merge patch that sets each ``(container name, image)`` of a workload of ``kind``."""
    patch: dict[str, Any] = {"containers": [{"name": name, "image": image} for name, image in images]}
    for key in reversed(KINDS[kind].pod_spec_path):
        patch = {key: patch}
    return patch
