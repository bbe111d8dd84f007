"""Cancelling a service's copies also reaches the copier it builds later for signatures and SBOMs."""
from __future__ import annotations

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService
from ansible_collections.imageclone.backup.plugins.module_utils.copier import CopyError
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryUnavailable
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo

NGINX = parse_reference("nginx:1.27")
BACKUP = parse_reference("backup.example.com/mirror/images:docker.io_library_nginx_1.27")


class UnreachableRegistry:
    """A registry client every request of which fails (pure logic: no registry involved)."""

    def with_credentials(self, credentials):
        return self

    def __getattr__(self, name):
        def unreachable(*args, **kwargs):
            raise RegistryUnavailable(NGINX, "no answer")
        return unreachable


def artifact_copier(service: BackupService):
    return service._referrer_copies().copier


def service() -> BackupService:
    return BackupService(UnreachableRegistry(), Skopeo(), CredentialStore(),
                         NamingPolicy("flat", "backup.example.com/mirror/images"))


def test_a_signature_copier_built_after_a_cancel_refuses_copies_until_resume():
    cancelled = service()
    cancelled.cancel_copies()

    with pytest.raises(CopyError, match="cancelled, shutting down"):
        artifact_copier(cancelled).copy(NGINX, BACKUP, CredentialStore())

    cancelled.resume_copies()
    with pytest.raises(CopyError, match="no answer"):
        artifact_copier(cancelled).copy(NGINX, BACKUP, CredentialStore())


def test_a_signature_copier_built_before_a_cancel_is_cancelled_with_the_rest():
    running = service()
    copier = artifact_copier(running)

    running.cancel_copies()

    with pytest.raises(CopyError, match="cancelled, shutting down"):
        copier.copy(NGINX, BACKUP, CredentialStore())
    assert artifact_copier(running) is copier
