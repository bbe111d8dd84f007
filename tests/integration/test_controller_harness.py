"""What the controller's integration tests share besides the process itself (``lab.controller_process``).

(Named ``test_controller_*`` so it lives next to the tests; it holds no tests itself.)
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from lab.collection import REPO
from lab.workloads import container_images

# -- reading workloads and events -------------------------------------------------------

def rewritten_to(repository: str, kind: str, obj: Mapping[str, Any]) -> bool:
    images = container_images(kind, obj)
    return bool(images) and all(image.startswith(repository + ":") and "@sha256:" in image
                                for image in images.values())


def managers(obj: Mapping[str, Any]) -> set[str]:
    return {entry.get("manager") for entry in obj["metadata"].get("managedFields") or ()}


def events_for(lab, namespace: str, name: str) -> list[dict[str, Any]]:
    from ansible_collections.imageclone.backup.plugins.module_utils.kube import Resource

    events, _ = lab.admin_api().list(Resource("Event", "v1", "events"), namespace)
    return [event for event in events if event.get("involvedObject", {}).get("name") == name]


def record(name: str, value: Any) -> None:
    """Print a measurement (``pytest -s`` shows it) and keep it in build/controller-measurements.jsonl."""
    print(f"\nMEASURED {name}: {value}")
    path = REPO / "build" / "controller-measurements.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps({"name": name, "value": value, "at": time.time()}) + "\n")
