"""The benchmark's workloads: generated deterministically, created in parallel, reset, observed.

``plan_workloads`` spreads W workloads over N namespaces with a fixed mix of
kinds (replicas 0, so nothing is scheduled) and gives each 1-3 containers
drawn from the I images; the first I container slots take every image once,
so all I images are in use and most are shared by several workloads.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError, Resource
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import ORIGINAL_IMAGES
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.workloads import container_images, images_patch

# Share of each kind in the mix (DaemonSets create no pods: the lab has no nodes).
KIND_MIX: tuple[tuple[str, int], ...] = (("Deployment", 55), ("StatefulSet", 20), ("DaemonSet", 10), ("CronJob", 15))
BENCH_KINDS: tuple[str, ...] = tuple(kind for kind, _ in KIND_MIX)
NAMESPACE = Resource("Namespace", "v1", "namespaces", namespaced=False)


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str
    namespace: str
    name: str
    containers: tuple[tuple[str, str], ...]  # (container name, image)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def namespaces(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index:02d}" for index in range(count)]


def plan_workloads(count: int, images: Sequence[str], ns: Sequence[str], *, seed: int = 7,
                   kinds: Sequence[tuple[str, int]] = KIND_MIX, prefix: str = "w") -> list[WorkloadSpec]:
    """``count`` workloads over ``ns``, 1-3 containers each, every image used at least once (when room)."""
    rng = random.Random(seed)
    kind_names = [kind for kind, _ in kinds]
    weights = [weight for _, weight in kinds]
    unused = list(images)
    rng.shuffle(unused)
    specs = []
    for index in range(count):
        kind = rng.choices(kind_names, weights)[0]
        containers = []
        for slot in range(rng.choice((1, 2, 2, 3))):
            image = unused.pop() if unused else rng.choice(images)
            containers.append((f"c{slot}", image))
        specs.append(WorkloadSpec(kind, ns[index % len(ns)], f"{prefix}{index:05d}", tuple(containers)))
    return specs


def pod_spec(containers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    return {"containers": [{"name": name, "image": image} for name, image in containers],
            "terminationGracePeriodSeconds": 0}


def manifest(spec: WorkloadSpec, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": spec.name, "bench": "image-clone"}
    template = {"metadata": {"labels": labels}, "spec": pod_spec(spec.containers)}
    metadata: dict[str, Any] = {"name": spec.name, "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    selector = {"matchLabels": {"app": spec.name}}
    if spec.kind == "Deployment":
        body = {"replicas": 0, "selector": selector, "template": template}
    elif spec.kind == "StatefulSet":
        body = {"replicas": 0, "serviceName": spec.name, "selector": selector, "template": template}
    elif spec.kind == "DaemonSet":
        body = {"selector": selector, "template": template}
    elif spec.kind == "CronJob":
        template["spec"]["restartPolicy"] = "Never"
        body = {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {"template": template}}}
    else:
        raise ValueError(spec.kind)
    return {"apiVersion": KINDS[spec.kind].api_version, "kind": spec.kind, "metadata": metadata, "spec": body}


def ensure_namespaces(api: KubeApi, names: Iterable[str]) -> None:
    for name in names:
        try:
            api.create(NAMESPACE, None, {"metadata": {"name": name}})
        except KubeApiError as error:
            if not error.conflict:
                raise


def parallel(function: Callable[[Any], Any], items: Sequence[Any], workers: int = 8) -> list[Any]:
    with ThreadPoolExecutor(workers, thread_name_prefix="bench") as pool:
        return list(pool.map(function, items))


def create_all(api: KubeApi, specs: Sequence[WorkloadSpec], workers: int = 8,
               annotate: Callable[[WorkloadSpec], dict[str, str] | None] | None = None,
               ) -> dict[str, tuple[float, float]]:
    """Create every workload, ``workers`` at a time; ``key -> (sent, acknowledged)`` wall-clock times."""
    times: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()

    def create(spec: WorkloadSpec) -> None:
        body = manifest(spec, annotations=annotate(spec) if annotate else None)
        for attempt in range(5):
            sent = time.time()
            try:
                api.create(KINDS[spec.kind], spec.namespace, body)
                break
            except KubeApiError as error:
                if error.conflict:
                    break
                if attempt == 4 or (error.status is not None and error.status < 500 and error.status != 429):
                    raise
                time.sleep(0.5 * (attempt + 1))
        with lock:
            times[spec.key] = (sent, time.time())

    parallel(create, specs, workers)
    return times


def snapshot(api: KubeApi, kinds: Iterable[str] = BENCH_KINDS, prefix: str | None = None
             ) -> dict[str, tuple[str, dict[str, str], dict[str, str], int]]:
    """``key -> (resourceVersion, container images, annotations, generation)`` of every workload."""
    state = {}
    for kind in kinds:
        items, _ = api.list(KINDS[kind])
        for obj in items:
            meta = obj["metadata"]
            if prefix and not meta["namespace"].startswith(prefix):
                continue
            state[f"{kind}/{meta['namespace']}/{meta['name']}"] = (
                meta["resourceVersion"], container_images(kind, obj), meta.get("annotations") or {},
                int(meta.get("generation") or 0))
    return state


def settle(api: KubeApi, prefix: str | None = None, quiet: float = 3.0, timeout: float = 120.0) -> float:
    """Wait until no workload's resourceVersion moves for ``quiet`` seconds (the controller manager has
    caught up with the last writes); returns the seconds waited."""
    started = time.monotonic()
    last = snapshot(api, prefix=prefix)
    stable_since = time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = snapshot(api, prefix=prefix)
        if {k: v[0] for k, v in now.items()} != {k: v[0] for k, v in last.items()}:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            break
    return time.monotonic() - started


# Annotations the controller manager writes on its own (not a contender's write).
_SYSTEM_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


def changed_objects(before: dict, after: dict) -> int:
    """Workloads with a new resourceVersion (any write, the controller manager's status updates included)."""
    return sum(1 for key, value in after.items() if key in before and before[key][0] != value[0])


def rewritten_objects(before: dict, after: dict) -> int:
    """Workloads whose spec (generation) or annotations changed: writes by a contender, not by the
    controller manager, whose status updates and revision annotation leave both alone."""
    def mine(annotations: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in annotations.items() if k not in _SYSTEM_ANNOTATIONS}

    return sum(1 for key, value in after.items() if key in before and (
        before[key][3] != value[3] or mine(before[key][2]) != mine(value[2])))


def count_pointing_at(state: dict, repository_prefix: str) -> int:
    """Workloads whose every image starts with ``repository_prefix``."""
    return sum(1 for _, images, _, _ in state.values()
               if images and all(image.startswith(repository_prefix) for image in images.values()))


def reset(api: KubeApi, specs: Sequence[WorkloadSpec], workers: int = 8) -> float:
    """Point every workload back at its source images and drop image-clone's annotation."""
    started = time.monotonic()

    def patch(spec: WorkloadSpec) -> None:
        body = {"metadata": {"annotations": {ORIGINAL_IMAGES: None}}, **images_patch(spec.kind, spec.containers)}
        api.patch(KINDS[spec.kind], spec.namespace, spec.name, body)

    parallel(patch, specs, workers)
    return time.monotonic() - started


def rewritten_mapping(state: dict) -> dict[str, str]:
    """``source image -> backup image`` as recorded by image-clone's annotation on rewritten workloads."""
    mapping = {}
    for _, images, metadata_annotations, _ in state.values():
        recorded = json.loads(metadata_annotations.get(ORIGINAL_IMAGES, "{}") or "{}")
        for section in recorded.values():
            for container, original in section.items():
                if container in images:
                    mapping[original] = images[container]
    return mapping
