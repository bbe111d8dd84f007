"""The options of image-clone's modules: argument specs, and checks a spec cannot express.

Pure data and pure functions, with no import of Ansible or of the engine's
third-party dependencies (the kinds come from the pure ``kinds`` module), so
a module can always build its ``AnsibleModule`` (and report a missing
``kubernetes`` client properly) from these specs. The
documentation of every option is in ``plugins/doc_fragments``; the sanity test
``validate-modules`` checks that both agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.kinds import KINDS

KIND_NAMES: Final = tuple(KINDS)
# A namespaced LIST costs a round trip; a cluster-wide one, the API server serializing and the client
# decoding every workload of its kind: a rewrite of 25 workloads in a cluster of 1,000 spent 0.05 s more
# listed cluster-wide (direct runs of the module at the benchmark's scale, 2026-11-30).
NAMESPACED_LISTS_MAX: Final = 8

# The Kubernetes connection, as kubernetes.core spells it. No defaults: ``None``
# means "not given", and the engine then reads the K8S_AUTH_* variables.
CONNECTION_ARGUMENTS: Final[Mapping[str, dict[str, Any]]] = {
    "kubeconfig": {"type": "raw"},
    "context": {"type": "str"},
    "host": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
    "client_cert": {"type": "path", "aliases": ["cert_file"]},
    "client_key": {"type": "path", "aliases": ["key_file"]},
    "proxy": {"type": "str"},
    "api_connect_timeout": {"type": "float"},
    "api_read_timeout": {"type": "float"},
}

# Where and how images are backed up (the engine's ``BackupOptions``).
BACKUP_ARGUMENTS: Final[Mapping[str, dict[str, Any]]] = {
    "backup_registry": {"type": "str", "required": True},
    "naming": {"type": "str", "choices": ["flat", "nested"], "default": "flat"},
    "backup_username": {"type": "str"},
    "backup_password": {"type": "str", "no_log": True},
    "backup_authfile": {"type": "path"},
    "source_authfile": {"type": "path"},
    "certs_dir": {"type": "path"},
    "insecure_registries": {"type": "list", "elements": "str", "default": []},
    "pin": {"type": "bool", "default": True},
    "parallel": {"type": "int", "default": 8},
    "per_registry": {"type": "int", "default": 4},
    "copy_timeout": {"type": "int", "default": 600},
    "retry_times": {"type": "int", "default": 3},
    "copier": {"type": "str", "choices": ["skopeo", "native"], "default": "native"},
    "use_pull_secrets": {"type": "bool", "default": True},
    "referrers": {"type": "bool", "default": True},
}

# Which workloads a module looks at (the engine's ``Scope``).
SCOPE_ARGUMENTS: Final[Mapping[str, dict[str, Any]]] = {
    "namespaces": {"type": "list", "elements": "str"},
    "ignore_namespaces": {"type": "list", "elements": "str", "default": []},
    "kinds": {"type": "list", "elements": "str", "choices": list(KIND_NAMES)},
    "skip_gitops": {"type": "bool", "default": False},
}

# Options read from the environment when not given, first variable set wins (the modules and the controller).
ENVIRONMENT_FALLBACKS: Final[Mapping[str, tuple[str, ...]]] = {
    "backup_username": ("IMAGECLONE_BACKUP_USERNAME",),
    "backup_password": ("IMAGECLONE_BACKUP_PASSWORD",),
    "backup_authfile": ("IMAGECLONE_BACKUP_AUTHFILE",),
}

# A username alone is never used (the engine needs both): say so instead.
BACKUP_REQUIRED_BY: Final[Mapping[str, str]] = {"backup_username": "backup_password"}

# The smallest value each integer option accepts.
MINIMUMS: Final[Mapping[str, int]] = {
    "parallel": 1,
    "per_registry": 1,
    "copy_timeout": 1,
    "retry_times": 0,
    "wait_timeout": 0,
}

# Kubernetes names: a namespace is a DNS label, a Secret a DNS subdomain.
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

WORKLOAD_FIELDS: Final = ("kind", "namespace", "name")
WorkloadId = tuple[str, str, str]


def argument_spec(
    *groups: Mapping[str, Mapping[str, Any]], env_fallback: Callable[..., Any] | None = None, **own: Any
) -> dict[str, dict[str, Any]]:
    """One ``argument_spec`` from option ``groups`` and a module's ``own`` options.

    Every option is a fresh copy, so a module may change its spec freely.
    ``env_fallback`` is Ansible's ``env_fallback``, passed in because this file
    does not import Ansible; with it, the options of ``ENVIRONMENT_FALLBACKS``
    get their ``fallback``. Raises ``ValueError`` when two groups define an option.
    """
    spec: dict[str, dict[str, Any]] = {}
    for group in (*groups, own):
        for name, option in group.items():
            if name in spec:
                raise ValueError(f"option {name!r} is defined twice")
            spec[name] = {key: list(value) if isinstance(value, list) else value for key, value in option.items()}
    if env_fallback is not None:
        for name, variables in ENVIRONMENT_FALLBACKS.items():
            if name in spec:
                spec[name]["fallback"] = (env_fallback, list(variables))
    return spec


def range_problems(params: Mapping[str, Any], label: Callable[[str], str] = str) -> list[str]:
    """One message per integer option below its minimum (options absent from ``params`` are fine);
    ``label`` names an option as its reader knows it (the controller's flag, say)."""
    return [
        f"{label(name)} must be at least {minimum}, got {params[name]}"
        for name, minimum in MINIMUMS.items()
        if params.get(name) is not None and params[name] < minimum
    ]


def is_namespace_name(name: str) -> bool:
    """Whether the API server accepts ``name`` for a namespace (a lowercase DNS label)."""
    return bool(_DNS_LABEL.fullmatch(name))


def is_object_name(name: str) -> bool:
    """Whether the API server accepts ``name`` for a Secret, a Lease... (a lowercase DNS subdomain)."""
    return bool(_DNS_SUBDOMAIN.fullmatch(name))


def name_problems(params: Mapping[str, Any]) -> list[str]:
    """One message per namespace or Secret name option value the API server would refuse."""
    problems = [
        f"{option}: {namespace!r} is not a valid namespace name (a lowercase DNS label)"
        for option in ("namespaces", "ignore_namespaces")
        for namespace in params.get(option) or ()
        if not is_namespace_name(namespace)
    ]
    secret = params.get("pull_secret")
    if secret is not None and not is_object_name(secret):
        problems.append(f"pull_secret: {secret!r} is not a valid Secret name (a lowercase DNS subdomain)")
    return problems


def scope_fields(params: Mapping[str, Any], only: Sequence[WorkloadId] | None = None) -> dict[str, Any]:
    """Keyword arguments for the engine's ``Scope.of`` from the scope options.

    With ``only`` (workload identities), the scope narrows to their kinds and
    namespaces, so discovery lists no more than it must: a selection needing at
    most ``NAMESPACED_LISTS_MAX`` LISTs (kinds times namespaces; a batch of the
    migrate playbook, usually a namespace or two) lists just those namespaces,
    while a wider one (and no ``namespaces`` option) lists each kind once
    cluster-wide and reads only the selected workloads of it. A selection wholly
    outside the scope options yields an empty list of namespaces (nothing listed).
    """
    namespaces = tuple(params["namespaces"]) if params.get("namespaces") else None
    kinds = list(params["kinds"]) if params.get("kinds") else list(KIND_NAMES)
    if only is not None:
        wanted_namespaces = dict.fromkeys(workload[1] for workload in only)
        wanted_kinds = [kind for kind in dict.fromkeys(workload[0] for workload in only) if kind in kinds]
        selected = tuple(n for n in wanted_namespaces if namespaces is None or n in namespaces)
        if namespaces is not None or len(selected) * len(wanted_kinds) <= NAMESPACED_LISTS_MAX:
            namespaces = selected
        if not wanted_kinds:
            namespaces = ()
        kinds = wanted_kinds or kinds
    return {
        "kinds": kinds,
        "namespaces": namespaces,
        "ignore_namespaces": tuple(params.get("ignore_namespaces") or ()),
        "skip_gitops": bool(params.get("skip_gitops")),
        "only": None if only is None else frozenset(only),
    }


def workload_ids(entries: Sequence[Any] | None) -> list[WorkloadId] | None:
    """The ``(kind, namespace, name)`` of each entry of a ``workloads`` option, in order, without repeats.

    Entries are mappings with at least ``kind``, ``namespace`` and ``name``;
    other keys are ignored, so the ``workloads`` that ``workload_images_info``
    returns can be passed as they are. ``None`` stays ``None`` (no selection).
    Raises ``ValueError`` naming the first bad entry.
    """
    if entries is None:
        return None
    ids: dict[WorkloadId, None] = {}
    for position, entry in enumerate(entries, start=1):
        where = f"workloads entry {position}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a dictionary with kind, namespace and name, got {entry!r}")
        missing = [field for field in WORKLOAD_FIELDS if not isinstance(entry.get(field), str) or not entry[field]]
        if missing:
            raise ValueError(f"{where} ({_describe(entry)}) needs a non-empty {', '.join(missing)}")
        if entry["kind"] not in KIND_NAMES:
            raise ValueError(
                f"{where} ({_describe(entry)}): unknown kind {entry['kind']!r}; known: {', '.join(KIND_NAMES)}"
            )
        ids[(entry["kind"], entry["namespace"], entry["name"])] = None
    return list(ids)


def _describe(entry: Mapping[str, Any]) -> str:
    return ", ".join(f"{field}={entry.get(field)!r}" for field in WORKLOAD_FIELDS)
