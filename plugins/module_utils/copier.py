"""What the backup service needs of a copier, whichever program or library does the copying.

A copier copies one image from a source to a destination reference with every
platform and every digest unchanged (the backup service verifies the result
by digest), and can be told to stop: ``cancel`` ends the copies running now
and fails new ones until ``resume``. Failures are ``CopyError``.
"""
from __future__ import annotations

from typing import Protocol

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.reference import ImageReference


class CopyError(RuntimeError):
    """A copy failed; ``missing``: the source image does not exist; ``transient``: a registry's
    server-side error worth another try."""

    def __init__(self, message: str, *, missing: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.transient = transient


class Copier(Protocol):
    def copy(self, source: ImageReference, destination: ImageReference, credentials: CredentialStore) -> None:
        """Copy ``source`` to ``destination``, all platforms, digests unchanged; raises ``CopyError``."""

    def cancel(self) -> int:
        """Kill the copies running now and fail new ones until ``resume``; returns how many were killed."""

    def resume(self) -> None: ...
