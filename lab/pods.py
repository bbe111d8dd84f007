"""Pods on the lab's node, as kubectl sees them: what runs, from which image, and bounded waits.

The demo and the node tests share these, so a wait that times out always says the
same useful things: each pod's phase, its containers' states and the namespace's
latest events.
"""
from __future__ import annotations

import json
from typing import Callable

from lab.waiting import wait_for

PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


def pods(lab, namespace: str, selector: str | None = None) -> list[dict]:
    """The namespace's pods (those being deleted left out), oldest first."""
    args = ["get", "pods", "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    result = lab.kubectl(*args)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl get pods -n {namespace} failed: {result.stderr.strip()}")
    items = [pod for pod in json.loads(result.stdout)["items"] if not pod["metadata"].get("deletionTimestamp")]
    return sorted(items, key=lambda pod: pod["metadata"]["creationTimestamp"])


def container_statuses(pod: dict) -> list[dict]:
    return (pod.get("status") or {}).get("containerStatuses") or []


def is_running(pod: dict, ready: bool = True) -> bool:
    """Whether every container of ``pod`` runs (and, with ``ready``, passes its readiness probe)."""
    statuses = container_statuses(pod)
    return (pod.get("status", {}).get("phase") == "Running" and len(statuses) == len(pod["spec"]["containers"])
            and all("running" in s.get("state", {}) and (s.get("ready") or not ready) for s in statuses))


def is_succeeded(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Succeeded"


def waiting_reasons(pod: dict) -> set[str]:
    """Why the containers of ``pod`` wait, e.g. ``{'ImagePullBackOff'}``."""
    return {s["state"]["waiting"].get("reason", "") for s in container_statuses(pod) if "waiting" in s.get("state", {})}


def image_ids(pod: dict) -> list[str]:
    """``repository@sha256:...`` of what each container of ``pod`` really runs, as the node reports it."""
    return [s.get("imageID", "") for s in container_statuses(pod)]


def owner_of(pod: dict) -> str:
    """``Kind/name`` of the workload a pod belongs to, through its ReplicaSet or Job name."""
    owners = pod["metadata"].get("ownerReferences") or [{"kind": "Pod", "name": pod["metadata"]["name"]}]
    kind, name = owners[0]["kind"], owners[0]["name"]
    if kind == "ReplicaSet":
        return f"Deployment/{name.rsplit('-', 1)[0]}"
    return f"{kind}/{name}"


def describe(lab, namespace: str) -> str:
    """Each pod's phase, images and container states, then the namespace's latest events."""
    lines = [f"pods in {namespace}:"]
    try:
        found = pods(lab, namespace)
    except RuntimeError as error:
        found, lines = [], [*lines, str(error)]
    for pod in found:
        states = ", ".join(f"{s['name']}={next(iter(s.get('state') or {'?': {}}))}"
                           f"({(next(iter((s.get('state') or {}).values()), {}) or {}).get('reason', '')})"
                           for s in container_statuses(pod))
        images = ", ".join(c["image"] for c in pod["spec"]["containers"])
        lines.append(f"  {pod['metadata']['name']}: {pod.get('status', {}).get('phase')} [{states}] {images}")
    events = lab.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", "-o",
                         "custom-columns=LAST:.lastTimestamp,OBJECT:.involvedObject.name,REASON:.reason,"
                         "MESSAGE:.message")
    lines.append("events (latest last):")
    lines += ["  " + line[:300] for line in events.stdout.splitlines()[-20:]]
    return "\n".join(lines)


def wait_for_pods(lab, namespace: str, condition: Callable[[list[dict]], bool], what: str,
                  timeout: float = 120.0, selector: str | None = None) -> list[dict]:
    """Poll the namespace's pods until ``condition(pods)`` holds; else fail saying what was seen."""
    def met() -> tuple[list[dict]] | None:
        found = pods(lab, namespace, selector)
        return (found,) if condition(found) else None  # a tuple: no pods at all may be what was awaited

    return wait_for(met, what, timeout, interval=1.0, explain=lambda: describe(lab, namespace))[0]


ROTATION_TAINT = "imageclone.io/rotating"


def rotate_node(lab, namespaces: list[str], forget: Callable[[], list[str]], timeout: float = 120.0) -> list[str]:
    """What a node rotation does to ``namespaces``: their pods stop, the node loses its image cache
    (``forget``), then the pods start again and must pull every image anew.

    New pods are held off by a NoSchedule taint (DaemonSets respect it too) until no container of
    those namespaces is left on the node: an image removed while a container still holds its
    unpacked layers would leave the layers behind without their content, and the next pod using
    the image would fail to start instead of pulling it again.
    """
    from lab.node import NODE_NAME

    taint = f"{ROTATION_TAINT}=now:NoSchedule"
    result = lab.kubectl("taint", "nodes", NODE_NAME, taint, "--overwrite")
    if result.returncode != 0:
        raise RuntimeError(f"kubectl taint failed: {result.stderr.strip()}")
    try:
        for namespace in namespaces:
            lab.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=true", f"--timeout={timeout:.0f}s")

        def off_the_node() -> bool:
            left = lab.node.containers(namespaces)
            lab.node.delete_stopped_containers(left)  # the kubelet collects them only every minute
            return not left

        wait_for(off_the_node, f"the containers of {namespaces} to leave the node", timeout, interval=0.5)
        return forget()
    finally:
        lab.kubectl("taint", "nodes", NODE_NAME, f"{ROTATION_TAINT}-")
