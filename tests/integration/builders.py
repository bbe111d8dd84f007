"""Shared by the integration tests: manifests of every workload kind (real objects with fields
that must survive a rewrite)."""

from __future__ import annotations

from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils.kube import Resource
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS

NAMESPACES = Resource("Namespace", "v1", "namespaces", namespaced=False)

NGINX, REDIS, BUSYBOX, POSTGRES, JENKINS = (
    "library/nginx:1.27",
    "library/redis:7.2",
    "library/busybox:1.36",
    "library/postgres:16",
    "jenkins/jenkins:lts",
)


def pod_spec(lab, kind: str, main: str = NGINX, side: str = REDIS, init: str = BUSYBOX) -> dict[str, Any]:
    """Two containers and an init container, with fields besides images that must survive."""
    spec: dict[str, Any] = {
        "initContainers": [{"name": "init", "image": lab.source_image(init), "command": ["sh", "-c", "true"]}],
        "containers": [
            {
                "name": "main",
                "image": lab.source_image(main),
                "env": [{"name": "MODE", "value": "prod"}],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"limits": {"memory": "64Mi"}},
            },
            {"name": "side", "image": lab.source_image(side), "args": ["--verbose"]},
        ],
        "terminationGracePeriodSeconds": 7,
    }
    if kind in ("Job", "CronJob"):
        spec["restartPolicy"] = "Never"
    return spec


def manifest(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    selector = {"app": name}
    template = {"metadata": {"labels": selector}, "spec": spec}
    specs = {
        "Deployment": {"replicas": 1, "selector": {"matchLabels": selector}, "template": template},
        "ReplicaSet": {"replicas": 0, "selector": {"matchLabels": selector}, "template": template},
        "ReplicationController": {"replicas": 0, "selector": selector, "template": template},
        "DaemonSet": {"selector": {"matchLabels": selector}, "template": template},
        "StatefulSet": {
            "replicas": 0,
            "serviceName": name,
            "selector": {"matchLabels": selector},
            "template": template,
        },
        "Job": {"suspend": True, "template": {"spec": spec}},
        "CronJob": {"schedule": "0 3 * * *", "suspend": True, "jobTemplate": {"spec": {"template": {"spec": spec}}}},
        "Pod": spec,
    }
    return {
        "apiVersion": KINDS[kind].api_version,
        "kind": kind,
        "metadata": {"name": name, "labels": {"team": "shop", **(labels or {})}},
        "spec": specs[kind],
    }

