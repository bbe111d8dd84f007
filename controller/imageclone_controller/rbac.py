"""The ClusterRole the controller needs for the kinds it watches, generated from the engine's kind descriptions.

deploy/20-clusterrole.yaml is this role for the default kinds (a test keeps
them equal); ``imgCloneCtrl --printClusterRole --kinds ...`` prints it for
others.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import yaml

from imageclone_controller.engine import kinds

ROLE_NAME: Final = "image-clone-controller"
LABELS: Final = {"app.kubernetes.io/name": "image-clone", "app.kubernetes.io/component": "controller"}
# Events report what each reconcile did to its workload.
EVENT_RULE: Final = {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}


def cluster_role(watched: Iterable[kinds.Kind]) -> dict[str, Any]:
    """Least privilege for watching ``watched``: read and patch them (never create, update or delete), and
    report Events."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE_NAME, "labels": dict(LABELS)},
        "rules": [*kinds.cluster_role_rules(watched), dict(EVENT_RULE)],
    }


def cluster_role_yaml(watched: Iterable[kinds.Kind]) -> str:
    return yaml.safe_dump(cluster_role(watched), sort_keys=False)
