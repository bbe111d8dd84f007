"""deploy/'s RBAC against the real API server: the controller's ServiceAccount can do exactly what it
needs and nothing else.

Extends ``test_controller_rbac.py`` (which runs the controller with nothing but the ServiceAccount's
token and checks a first list of refusals): here the whole permission list the API server computes
(``kubectl auth can-i --list``) is compared with the expected one, and a longer list of dangerous
verbs (escalate, bind, impersonate, tokens, exec, webhooks, nodes, ...) is checked one by one.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from test_controller_rbac import DEPLOY, SA, apply, rbac_documents, service_account  # noqa: F401 - a fixture

# What the ServiceAccount may do (resource -> verbs), besides the self-reviews every identity gets.
EXPECTED_EVERYWHERE = {
    "deployments.apps": {"get", "list", "watch", "patch"},
    "daemonsets.apps": {"get", "list", "watch", "patch"},
    "statefulsets.apps": {"get", "list", "watch", "patch"},
    "cronjobs.batch": {"get", "list", "watch", "patch"},
    "replicationcontrollers": {"get", "list", "watch", "patch"},
    "events": {"create", "patch"},
    # --usePullSecrets (on by default): the pull Secrets and ServiceAccounts workloads name, read by name only.
    "secrets": {"get"},
    "serviceaccounts": {"get"},
}
EXPECTED_OWN_NAMESPACE = {
    **EXPECTED_EVERYWHERE,
    "leases.coordination.k8s.io": {"create"},
    "leases.coordination.k8s.io/image-clone-controller": {"get", "update"},
}
EVERY_IDENTITY = {"selfsubjectreviews.authentication.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",
                  "selfsubjectrulesreviews.authorization.k8s.io"}
PULL_SECRETS = {"secrets": {"get", "create", "update"}}

# (verb, resource[, subresource])
FORBIDDEN = [
    # privilege escalation
    ("escalate", "clusterroles.rbac.authorization.k8s.io"), ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterroles.rbac.authorization.k8s.io"), ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("patch", "clusterrolebindings.rbac.authorization.k8s.io"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("escalate", "roles.rbac.authorization.k8s.io"),
    ("impersonate", "users"), ("impersonate", "groups"), ("impersonate", "serviceaccounts"),
    ("create", "serviceaccounts", "token"), ("create", "serviceaccounts"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
    ("update", "certificatesigningrequests.certificates.k8s.io", "approval"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    # workloads beyond patching their template
    ("delete", "deployments.apps"), ("deletecollection", "deployments.apps"), ("create", "deployments.apps"),
    ("update", "deployments.apps"), ("patch", "deployments.apps", "scale"), ("update", "deployments.apps", "status"),
    ("delete", "daemonsets.apps"), ("delete", "statefulsets.apps"), ("delete", "cronjobs.batch"),
    ("create", "cronjobs.batch"), ("create", "jobs.batch"), ("patch", "jobs.batch"),
    ("patch", "replicasets.apps"), ("delete", "replicasets.apps"),
    # pods and what runs in them
    ("create", "pods"), ("get", "pods"), ("create", "pods", "exec"), ("create", "pods", "attach"),
    ("create", "pods", "portforward"), ("get", "pods", "log"), ("create", "pods", "eviction"),
    # secrets beyond reading one by name, without the optional binding, and config
    ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"), ("update", "secrets"),
    ("list", "serviceaccounts"), ("update", "serviceaccounts"),
    ("get", "configmaps"), ("update", "configmaps"),
    # cluster objects
    ("get", "nodes"), ("patch", "nodes"), ("create", "namespaces"), ("delete", "namespaces"),
    ("patch", "namespaces"), ("create", "persistentvolumes"),
    # leader election beyond its own Lease, events beyond reporting
    ("delete", "leases.coordination.k8s.io/image-clone-controller"),
    ("patch", "leases.coordination.k8s.io/image-clone-controller"), ("list", "leases.coordination.k8s.io"),
    ("watch", "leases.coordination.k8s.io"), ("delete", "events"), ("update", "events"), ("list", "events"),
    ("*", "*"),
]


def permissions(lab, namespace: str, where: str) -> dict[str, set[str]]:
    """``resource[/name] -> verbs`` from ``kubectl auth can-i --list`` for the ServiceAccount in ``where``."""
    result = lab.kubectl("auth", "can-i", "--list", f"--as=system:serviceaccount:{namespace}:{SA}", "-n", where)
    assert result.returncode == 0, result.stderr
    found: dict[str, set[str]] = {}
    for line in result.stdout.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$", line)
        if match is None:
            # Non-resource URLs (/api, /healthz, /version...): discovery every identity may GET.
            assert re.search(r"\[get\]\s*$", line), line
            continue
        resource, names, verbs = match.groups()
        for name in names.split() or [""]:
            key = f"{resource}/{name}" if name else resource
            found.setdefault(key, set()).update(verbs.split())
    return {key: verbs for key, verbs in found.items() if key not in EVERY_IDENTITY}


def can_i(lab, namespace: str, verb: str, resource: str, where: str, subresource: str | None = None) -> bool:
    """``resource`` may be ``resource/name``; a subresource is passed on its own (kubectl reads
    ``pods/exec`` as the pod named exec)."""
    extra = [f"--subresource={subresource}"] if subresource else []
    result = lab.kubectl("auth", "can-i", verb, resource, *extra, f"--as=system:serviceaccount:{namespace}:{SA}",
                         "-n", where)
    return result.stdout.strip() == "yes"


def test_the_service_account_has_exactly_the_expected_permissions(lab, namespace, service_account):  # noqa: F811
    assert permissions(lab, namespace, namespace) == EXPECTED_OWN_NAMESPACE
    for other in ("default", "kube-system"):
        assert permissions(lab, namespace, other) == EXPECTED_EVERYWHERE, other


def test_dangerous_verbs_are_refused_everywhere(lab, namespace, service_account):  # noqa: F811
    checks = [(entry[0], entry[1], where, *entry[2:]) for entry in FORBIDDEN for where in (namespace, "kube-system")]
    with ThreadPoolExecutor(6) as pool:
        answers = pool.map(lambda c: can_i(lab, namespace, *c), checks)
        allowed = [check for check, yes in zip(checks, answers, strict=True) if yes]
    assert allowed == [], f"the ServiceAccount may: {allowed}"
    # Sanity: the same helper does say yes where the role grants it.
    assert can_i(lab, namespace, "patch", "deployments.apps", "kube-system")  # RBAC allows; the code never does


def test_the_optional_pull_secret_binding_adds_only_secret_writes(lab, namespace, service_account):  # noqa: F811
    apply(lab, rbac_documents(namespace, service_account, [DEPLOY / "optional" / "pull-secret-binding.yaml"]))
    granted = permissions(lab, namespace, namespace)
    assert all(granted.get(key, set()) >= verbs for key, verbs in EXPECTED_OWN_NAMESPACE.items()), granted
    added = {key: extra for key, verbs in granted.items() if (extra := verbs - EXPECTED_OWN_NAMESPACE.get(key, set()))}
    # Secrets only (by name or not), and only the verbs --pullSecret uses.
    assert added and all(key.split("/")[0] == "secrets" and verbs <= PULL_SECRETS["secrets"]
                         for key, verbs in added.items()), added
    assert set().union(*added.values()) == PULL_SECRETS["secrets"]
    for verb in ("list", "watch", "delete", "patch", "deletecollection"):
        assert not can_i(lab, namespace, verb, "secrets", namespace), verb


def test_the_optional_pull_secret_binding_cannot_replace_other_secrets(lab, namespace,
                                                                       service_account):  # noqa: F811
    apply(lab, rbac_documents(namespace, service_account, [DEPLOY / "optional" / "pull-secret-binding.yaml"]))
    assert can_i(lab, namespace, "update", "secrets/imageclone-backup-pull", namespace)
    # Reading any Secret by name is --usePullSecrets' documented trade-off; replacing one is never granted.
    for where in ("kube-system", namespace):
        assert not can_i(lab, namespace, "update", "secrets/cluster-admin-token", where), where
