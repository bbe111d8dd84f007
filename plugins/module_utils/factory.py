"""Build the backup service from plain options, the same way for modules and the controller.

The backup path needs no kubernetes client: ``image_backup`` runs where only
the registries are reachable. ``Migration.from_options`` adds the cluster.

Option names are those of the Ansible modules (``backup_registry``,
``backup_username``...). Credentials come from the backup auth file, then the
explicit username/password (which win for the backup registry), plus an
optional auth file for private source registries; with ``use_pull_secrets``
the workloads' own pull Secrets complete them (see ``pullcredentials``).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService, BackupSettings
from ansible_collections.imageclone.backup.plugins.module_utils.copier import Copier
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import (
    Credential,
    CredentialStore,
    PullSecret,
)
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.proxies import ProxyEnvironment
from ansible_collections.imageclone.backup.plugins.module_utils.reference import InvalidReference, parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient

DEFAULT_USER_AGENT = "image-clone"


@dataclass(frozen=True, repr=False)
class BackupOptions:
    """Where and how to back up; ``repr`` never shows the password."""

    backup_registry: str
    naming: str = "flat"
    backup_username: str | None = None
    backup_password: str | None = None
    backup_authfile: str | None = None
    source_authfile: str | None = None
    certs_dir: str | None = None
    insecure_registries: tuple[str, ...] = ()
    pin: bool = True
    parallel: int = 8
    per_registry: int = 4
    copy_timeout: int = 600
    retry_times: int = 3
    use_pull_secrets: bool = True
    copier: str = "native"
    referrers: bool = True

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> BackupOptions:
        """Options from a mapping (module params); unknown keys are ignored, ``None`` means default."""
        known = set(cls.__dataclass_fields__)
        given = {key: value for key, value in params.items() if key in known and value is not None}
        if "insecure_registries" in given:
            given["insecure_registries"] = tuple(given["insecure_registries"])
        return cls(**given)

    def __repr__(self) -> str:
        return f"BackupOptions(backup_registry={self.backup_registry!r}, naming={self.naming!r})"

    @property
    def policy(self) -> NamingPolicy:
        return NamingPolicy(self.naming, self.backup_registry)  # type: ignore[arg-type]

    def credentials(self) -> CredentialStore:
        """Source credentials, then the backup auth file, then the explicit backup login (last wins)."""
        store = CredentialStore()
        if self.source_authfile:
            store = store.merged(CredentialStore.from_authfile(self.source_authfile))
        if self.backup_authfile:
            store = store.merged(CredentialStore.from_authfile(self.backup_authfile))
        if self.backup_username and self.backup_password:
            store = store.with_credential(self.policy.target_registry,
                                          Credential(self.backup_username, self.backup_password))
        return store

    def has_backup_login(self) -> bool:
        """Whether credentials for the backup registry were given: then it needs them, and so do the nodes
        pulling the rewritten images."""
        return self.credentials().lookup(self.policy.target_registry) is not None

    def pull_secret(self, name: str) -> PullSecret:
        """The pull secret workloads need for the backup registry; ``ValueError`` without a login."""
        credential = self.credentials().lookup(self.policy.target_registry)
        if credential is None or not credential.has_password:
            raise ValueError(f"a pull secret needs a username and password for {self.policy.target_registry}")
        return PullSecret(self.policy.target_registry, credential.username, credential.password, name)


def backup_service(
    options: BackupOptions, *, dry_run: bool = False, copy: bool = True, restore: bool = True,
    referrers_checked: Iterable[str] = (),
) -> BackupService:
    """A ``BackupService`` for ``options`` (``copy=False``: never make a first copy;
    ``restore=False``: never copy a lost backup again either; ``referrers_checked``: the images whose
    referrers an earlier step of the run copied, as written; see ``BackupSettings``)."""
    store = options.credentials()
    certs_dir = Path(options.certs_dir) if options.certs_dir else None
    insecure = frozenset(options.insecure_registries)
    # Read once for both, so the engine's requests and skopeo's copies never see different variables.
    proxies = ProxyEnvironment.from_environ(os.environ)
    registry = RegistryClient(store, certs_dir=certs_dir, insecure_registries=insecure,
                              user_agent=DEFAULT_USER_AGENT, pool_size=max(16, options.parallel * 2), proxies=proxies)
    return BackupService(registry, _copier(options, registry, certs_dir, insecure, proxies), store, options.policy,
                         BackupSettings(pin=options.pin, parallel=options.parallel, per_registry=options.per_registry,
                                        dry_run=dry_run, copy=copy, restore=restore, referrers=options.referrers,
                                        referrers_checked=_normalized(referrers_checked)))


def _copier(options: BackupOptions, registry: RegistryClient, certs_dir: Path | None, insecure: frozenset[str],
            proxies: ProxyEnvironment) -> Copier:
    """The copier ``options`` name; only its own module is imported, as AnsiballZ compiles every module a
    module process imports."""
    if options.copier == "native":
        from ansible_collections.imageclone.backup.plugins.module_utils.native_copier import NativeCopier

        return NativeCopier(registry, workers=max(4, options.parallel * 2), per_registry=options.per_registry + 2,
                            attempts=options.retry_times + 1)
    from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo

    return Skopeo(certs_dir=certs_dir, insecure_registries=insecure, retry_times=options.retry_times,
                  timeout=float(options.copy_timeout), proxies=proxies)


def _normalized(images: Iterable[str]) -> frozenset[str]:
    """``images`` as their normalized references (``nginx`` -> ``docker.io/library/nginx:latest``); an invalid
    one names no image any workload can use, so it is left out."""
    normalized = set()
    for image in images:
        try:
            normalized.add(str(parse_reference(image)))
        except InvalidReference:
            continue
    return frozenset(normalized)
