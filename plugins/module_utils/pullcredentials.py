"""Source credentials from the workloads' own pull Secrets, the ones their pods pull with.

A pod pulls with the Secrets its spec names in ``imagePullSecrets``, plus those
of its ServiceAccount (``serviceAccountName``, else ``default``), which the
ServiceAccount admission plugin adds to each pod: a workload's pod template
names the first, its ServiceAccount the second. image-clone reads both, each
object by name with one GET (Secrets are never listed or watched), and takes
``kubernetes.io/dockerconfigjson`` and ``kubernetes.io/dockercfg`` Secrets
through the auth file parser. A Secret that is missing, forbidden, of another
type or malformed is a problem that names it (``namespace/name``), never its
content; it only matters when one of its workloads' images then cannot be
backed up, and it is added to that image's reason.

Per image, the credentials are those of every workload using it: the first
Secret with an entry for a registry wins (workloads in discovery order, then
the pod template's Secrets, then the ServiceAccount's). A reader holds what it
read for one pass; a new pass starts a new reader, so a rotated or newly
created Secret is read again.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialError, CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError, Resource
from ansible_collections.imageclone.backup.plugins.module_utils.plan import BackupOutcome
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import SECRET
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import Workload

SERVICE_ACCOUNT: Final = Resource("ServiceAccount", "v1", "serviceaccounts")
DEFAULT_SERVICE_ACCOUNT: Final = "default"
# Secret type -> (the data key holding the docker config, whether it is the legacy form without "auths").
DOCKER_CONFIG_TYPES: Final[Mapping[str, tuple[str, bool]]] = {
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson", False),
    "kubernetes.io/dockercfg": (".dockercfg", True),
}


@dataclass(frozen=True)
class SourceCredentials:
    """Per image string, the credentials its workloads' pull Secrets give, and the problems met reading them."""

    stores: Mapping[str, CredentialStore]
    problems: Mapping[str, tuple[str, ...]]

    def explain(self, outcomes: Mapping[str, BackupOutcome]) -> dict[str, BackupOutcome]:
        """``outcomes`` where each image not verified also names the pull Secrets that could not be used."""
        explained = dict(outcomes)
        for image, outcome in outcomes.items():
            problems = self.problems.get(image)
            if problems and not outcome.verified:
                reason = "; ".join((outcome.reason or outcome.state.value, *problems))
                explained[image] = replace(outcome, reason=reason)
        return explained


class PullSecretReader:
    """Reads pull Secrets and ServiceAccounts by name, each at most once (one reader per pass)."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._secrets: dict[str, CredentialStore | str] = {}
        self._accounts: dict[str, tuple[str, ...] | str] = {}

    def secret_names(self, workload: Workload) -> tuple[list[str], list[str]]:
        """The pull Secrets (``namespace/name``) ``workload``'s pods pull with, and why some may be left out."""
        names = [f"{workload.namespace}/{name}" for name in workload.pull_secrets]
        account = f"{workload.namespace}/{service_account_name(workload)}"
        listed = self._account_secrets(account)
        if isinstance(listed, str):
            return names, [f"{workload.key}: {listed}"]
        return list(dict.fromkeys([*names, *listed])), []

    def credentials(self, names: Iterable[str]) -> tuple[CredentialStore, list[str]]:
        """The credentials of the Secrets ``names`` (``namespace/name``), the first winning per registry, and
        one problem per Secret that could not be used."""
        store, problems = CredentialStore(), []
        for name in names:
            read = self._secret(name)
            if isinstance(read, str):
                problems.append(read)
            else:
                store = read.merged(store)
        return store, problems

    def _account_secrets(self, account: str) -> tuple[str, ...] | str:
        if account not in self._accounts:
            namespace, name = account.split("/", 1)
            try:
                obj = self._api.get(SERVICE_ACCOUNT, namespace, name)
            except KubeApiError as error:
                self._accounts[account] = f"the pull Secrets of ServiceAccount {account} could not be read: {error}"
            else:
                entries = obj.get("imagePullSecrets")
                names = [entry.get("name") for entry in entries if isinstance(entry, dict)] \
                    if isinstance(entries, list) else []
                self._accounts[account] = tuple(f"{namespace}/{n}" for n in names if isinstance(n, str) and n)
        return self._accounts[account]

    def _secret(self, secret: str) -> CredentialStore | str:
        if secret not in self._secrets:
            self._secrets[secret] = self._read_secret(secret)
        return self._secrets[secret]

    def _read_secret(self, secret: str) -> CredentialStore | str:
        namespace, name = secret.split("/", 1)
        try:
            obj = self._api.get(SECRET, namespace, name)
        except KubeApiError as error:
            if error.not_found:
                return f"pull Secret {secret} does not exist"
            return f"pull Secret {secret} could not be read: {error.reason} ({error.status})"
        kind = obj.get("type")
        if not isinstance(kind, str) or kind not in DOCKER_CONFIG_TYPES:
            return f"pull Secret {secret} is of type {kind!r}, not one of {', '.join(DOCKER_CONFIG_TYPES)}"
        key, legacy = DOCKER_CONFIG_TYPES[kind]
        where = f"pull Secret {secret} ({key})"
        encoded = (obj.get("data") or {}).get(key)
        if not isinstance(encoded, str):
            return f"{where} has no data"
        try:
            # Decoding errors are never chained or shown: their context can hold the secret's bytes.
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return f"{where} is not base64 of UTF-8 text"
        try:
            return CredentialStore.from_docker_config(text, source=where, legacy=legacy)
        except CredentialError as error:
            return str(error)


def service_account_name(workload: Workload) -> str:
    """The ServiceAccount ``workload``'s pods run as (``serviceAccount`` is its deprecated spelling)."""
    spec = workload.kind.pod_spec(workload.raw) or {}
    for field in ("serviceAccountName", "serviceAccount"):
        if isinstance(spec.get(field), str) and spec[field]:
            return str(spec[field])
    return DEFAULT_SERVICE_ACCOUNT


def secrets_by_image(
    reader: PullSecretReader, workloads: Iterable[Workload], images: Collection[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per image of ``images``, the pull Secrets of the workloads using it, in order, and the problems met
    finding them (an unreadable ServiceAccount)."""
    secrets: dict[str, list[str]] = {}
    problems: dict[str, list[str]] = {}
    for workload in workloads:
        used = [image.image for image in workload.images if image.image in images]
        if not used:
            continue
        names, trouble = reader.secret_names(workload)
        for image in used:
            secrets[image] = list(dict.fromkeys([*secrets.get(image, []), *names]))
            problems[image] = list(dict.fromkeys([*problems.get(image, []), *trouble]))
    return secrets, problems


def source_credentials(
    reader: PullSecretReader, secrets: Mapping[str, Iterable[str]],
    problems: Mapping[str, Iterable[str]] | None = None,
) -> SourceCredentials:
    """Per image, the credentials of its pull Secrets ``secrets`` (``namespace/name``), with ``problems`` met
    before and those of reading them."""
    stores, found = {}, {image: tuple(trouble) for image, trouble in (problems or {}).items() if trouble}
    for image, names in secrets.items():
        store, trouble = reader.credentials(names)
        if len(store):
            stores[image] = store
        if trouble:
            found[image] = (*found.get(image, ()), *trouble)
    return SourceCredentials(stores, found)


def workload_source_credentials(
    reader: PullSecretReader, workloads: Iterable[Workload], images: Collection[str]
) -> SourceCredentials:
    """``source_credentials`` for ``images`` from the pull Secrets of the ``workloads`` that use them."""
    secrets, problems = secrets_by_image(reader, workloads, images)
    return source_credentials(reader, secrets, problems)
