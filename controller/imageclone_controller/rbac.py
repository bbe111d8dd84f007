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
# --usePullSecrets: each workload's pull Secrets and its ServiceAccount, read by name. RBAC cannot narrow a rule
# to the Secrets workloads happen to reference, so this is get on every one; never list or watch.
PULL_SECRETS_RULE: Final = {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}


def cluster_role(watched: Iterable[kinds.Kind], *, pull_secrets: bool = True) -> dict[str, Any]:
    """Least privilege for watching ``watched``: read and patch them (never create, update or delete), report
    Events and, with ``pull_secrets``, read the pull Secrets workloads name."""
    extra = [dict(PULL_SECRETS_RULE)] if pull_secrets else []
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE_NAME, "labels": dict(LABELS)},
        "rules": [*kinds.cluster_role_rules(watched), dict(EVENT_RULE), *extra],
    }


def cluster_role_yaml(watched: Iterable[kinds.Kind], *, pull_secrets: bool = True) -> str:
    return yaml.safe_dump(cluster_role(watched, pull_secrets=pull_secrets), sort_keys=False)
