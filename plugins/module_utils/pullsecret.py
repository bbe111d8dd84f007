"""The pull secret a workload needs when the backup registry is private.

The Secret holds the backup registry's credentials only, and the workload
references it next to its existing pull secrets, in the same patch that
rewrites its images (see ``rewrite.apply``). Secret data never appears in
messages: errors name the Secret, not its content.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import DEFAULT_SECRET_NAME, basic_token
from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError, Resource
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import Workload

SECRET: Final = Resource("Secret", "v1", "secrets")
SECRET_TYPE: Final = "kubernetes.io/dockerconfigjson"
DATA_KEY: Final = ".dockerconfigjson"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "image-clone"
# Create/replace race with other writers; a few rounds settle it.
_ATTEMPTS: Final = 3


class PullSecretError(Exception):
    """The pull secret cannot be put in place; the message names the Secret or workload."""


def ensure_pull_secret(
    api: KubeApi,
    namespace: str,
    registry: str,
    username: str,
    password: str,
    *,
    name: str = DEFAULT_SECRET_NAME,
    dry_run: bool = False,
) -> bool:
    """Make Secret ``namespace/name`` hold exactly these credentials for ``registry``; True when written.

    Creates the Secret, or replaces its data when it differs; an identical
    Secret costs no write. Refuses (``PullSecretError``) to overwrite a Secret
    that image-clone did not create. API errors raise ``KubeApiError``.
    """
    desired = _docker_config(registry, username, password)
    for _attempt in range(_ATTEMPTS - 1):
        try:
            return _converge(api, namespace, name, desired, dry_run)
        except KubeApiError as error:
            if not error.conflict:
                raise
    return _converge(api, namespace, name, desired, dry_run)


def pull_secret_fragment(workload: Workload, name: str = DEFAULT_SECRET_NAME) -> dict[str, Any]:
    """The pod-spec fields that make ``workload`` reference Secret ``name``; ``{}`` when it does.

    A strategic merge patch merges ``imagePullSecrets`` by name, so existing
    entries stay and none is duplicated; the order directive (as kubectl
    sends it) appends the new entry, which would otherwise come first.
    Raises ``PullSecretError`` for a kind whose ``imagePullSecrets`` the API
    server does not let change (a bare Pod).
    """
    if name in workload.pull_secrets:
        return {}
    if not workload.kind.pull_secrets_mutable:
        raise PullSecretError(
            f"{workload.key}: a {workload.kind.name}'s imagePullSecrets cannot change after creation; "
            f"recreate it with imagePullSecret {name!r} to pull from the backup registry"
        )
    order = [{"name": existing} for existing in (*workload.pull_secrets, name)]
    return {"imagePullSecrets": [{"name": name}], "$setElementOrder/imagePullSecrets": order}


def _converge(api: KubeApi, namespace: str, name: str, desired: dict[str, Any], dry_run: bool) -> bool:
    try:
        current = api.get(SECRET, namespace, name)
    except KubeApiError as error:
        if not error.not_found:
            raise
        api.create(SECRET, namespace, _secret(namespace, name, desired), dry_run=dry_run)
        return True
    labels = (current.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        raise PullSecretError(
            f"Secret {namespace}/{name} exists and is not managed by image-clone "
            f"(label {MANAGED_BY_LABEL}={MANAGED_BY}); refusing to overwrite it"
        )
    if current.get("type") == SECRET_TYPE and _stored_config(current) == desired:
        return False
    replacement = _secret(namespace, name, desired)
    # Keep what others added to the metadata; resourceVersion makes the replace conditional.
    metadata = {key: value for key, value in current["metadata"].items() if key != "managedFields"}
    replacement["metadata"] = metadata
    api.replace(SECRET, namespace, name, replacement, dry_run=dry_run)
    return True


def _docker_config(registry: str, username: str, password: str) -> dict[str, Any]:
    return {"auths": {registry: {"username": username, "password": password, "auth": basic_token(username, password)}}}


def _secret(namespace: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    encoded = base64.b64encode(json.dumps(config, sort_keys=True).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "data": {DATA_KEY: encoded},
    }


def _stored_config(secret: dict[str, Any]) -> Any:
    """The decoded docker config of ``secret``, or None when it is absent or unreadable."""
    data = secret.get("data") or {}
    if set(data) != {DATA_KEY}:
        return None
    try:
        return json.loads(base64.b64decode(data[DATA_KEY], validate=True))
    except ValueError:
        return None
