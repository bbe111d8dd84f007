"""The backup service: make sure images are in the backup registry, verified by digest.

For each distinct source image it HEADs the source and the backup (never a
manifest GET; the backup alone when the source is referenced by a digest the
backup holds), copies with its ``Copier`` only when the backup is
absent or differs, then HEADs the backup again and requires the source digest. Work runs in a
bounded thread pool, bounded per source registry too, and a copy requested
twice at once runs once.

Source credentials are the configured ones (the source auth file, the backup
login), plus per image those a caller hands over (a workload's pull Secrets)
for registries the configured ones do not cover: an operator's entry is never
overridden by a workload's Secret, and the backup registry's login least of all.

With ``referrers`` (the default), a verified backup also gets what refers to
the image's digest upstream: signatures, attestations and SBOMs (see
``referrers``); an image whose referrers could not be copied is ``failed``, so
no workload is rewritten to a backup that a signature policy would refuse.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from ansible_collections.imageclone.backup.plugins.module_utils.concurrency import KeyedLimiter, SingleFlight
from ansible_collections.imageclone.backup.plugins.module_utils.copier import Copier, CopyError
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.naming import (
    NamingPolicy,
    backup_reference,
    is_backup_reference,
    pinned_reference,
    versioned_backup_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.plan import BackupOutcome
from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    InvalidReference,
    parse_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.registry import (
    ManifestInfo,
    RateLimited,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)
from ansible_collections.imageclone.backup.plugins.module_utils.states import ImageState

if TYPE_CHECKING:
    from ansible_collections.imageclone.backup.plugins.module_utils.referrers import ReferrerCopies

# The copier retries network errors itself; these cover a registry's own 5xx answers.
COPY_ATTEMPTS = 3
COPY_RETRY_DELAY = 1.0


@dataclass(frozen=True)
class BackupSettings:
    """Tuning of one backup run: pinning, parallelism, check mode (``dry_run``),
    ``copy=False`` to never make a first copy (an absent backup is then ``missing``),
    and ``restore=False`` to never copy a lost backup again either (only say whether
    upstream still has it); ``referrers=False`` leaves signatures, attestations and SBOMs behind.

    ``referrers_checked`` names image references (as workloads use them, normalized) whose referrers an
    earlier step of the same run already copied: they are not looked for upstream again (the migration
    playbook's rewrite tasks trust its backup task so)."""

    pin: bool = True
    parallel: int = 8
    per_registry: int = 4
    dry_run: bool = False
    copy: bool = True
    restore: bool = True
    referrers: bool = True
    referrers_checked: frozenset[str] = frozenset()


class Backups(Protocol):
    """What a migration needs of its backups: the engine's ``BackupService``, or a cache in front of
    one (the controller's ``CachedBackups``)."""

    @property
    def policy(self) -> NamingPolicy: ...

    @property
    def settings(self) -> BackupSettings: ...

    @property
    def registry(self) -> RegistryClient: ...

    def ensure_all(self, images: Mapping[str, ImageReference],
                   source_credentials: Mapping[str, CredentialStore] | None = None) -> dict[str, BackupOutcome]: ...

    def restore(self, original: ImageReference, backup: ImageReference,
                source_credentials: CredentialStore | None = None) -> BackupOutcome: ...

    def copy_referrers_all(self, in_use: Mapping[str, tuple[ImageReference, BackupOutcome]]
                           ) -> dict[str, BackupOutcome]: ...


class BackupService:
    """Ensures images exist in the backup registry under ``policy``'s names."""

    def __init__(
        self,
        registry: RegistryClient,
        copier: Copier,
        credentials: CredentialStore,
        policy: NamingPolicy,
        settings: BackupSettings = BackupSettings(),
    ) -> None:
        self._registry = registry
        self._copier = copier
        self._credentials = credentials
        self.policy = policy
        self.settings = settings
        self._flight: SingleFlight[BackupOutcome] = SingleFlight()
        self._per_registry = KeyedLimiter(settings.per_registry)
        self._referrers: ReferrerCopies | None = None
        self._referrers_built = threading.Lock()
        self._cancelled = False

    def cancel_copies(self) -> int:
        """Kill the copies running now and fail new ones until ``resume_copies``; returns how many were killed."""
        with self._referrers_built:
            self._cancelled = True
            artifacts = self._referrers.copier if self._referrers else None
        killed = self._copier.cancel()
        if artifacts is not None and artifacts is not self._copier:
            killed += artifacts.cancel()
        return killed

    def resume_copies(self) -> None:
        with self._referrers_built:
            self._cancelled = False
            artifacts = self._referrers.copier if self._referrers else None
        self._copier.resume()
        if artifacts is not None:
            artifacts.resume()

    def _referrer_copies(self) -> ReferrerCopies:
        """What copies referrers, built on first use: AnsiballZ compiles every module a module process
        imports, and a rewrite batch whose referrers the backup task already copied never needs these."""
        with self._referrers_built:
            if self._referrers is None:
                from ansible_collections.imageclone.backup.plugins.module_utils.native_copier import NativeCopier
                from ansible_collections.imageclone.backup.plugins.module_utils.referrers import ReferrerCopies

                # Artifacts always go through the native copier: an index of them must stay byte for byte.
                artifacts = (self._copier if isinstance(self._copier, NativeCopier)
                             else NativeCopier(self._registry, workers=4))
                if self._cancelled:
                    artifacts.cancel()
                self._referrers = ReferrerCopies(self._registry, artifacts)
            return self._referrers

    @property
    def registry(self) -> RegistryClient:
        """The registry client (its rate-limit state and request counts are worth exporting)."""
        return self._registry

    def ensure_all(self, images: Mapping[str, ImageReference],
                   source_credentials: Mapping[str, CredentialStore] | None = None) -> dict[str, BackupOutcome]:
        """Ensure every image; the result maps each key of ``images`` to its outcome.

        Keys are the image strings as written in workloads; several keys that
        normalize to the same source share one check and one copy (and their
        ``source_credentials``, the first key's winning per registry).
        """
        distinct = {str(ref): ref for ref in images.values()}
        extra: dict[str, CredentialStore] = {}
        for key, ref in images.items():
            given = (source_credentials or {}).get(key)
            if given is not None:
                extra[str(ref)] = given.merged(extra[str(ref)]) if str(ref) in extra else given
        outcomes = self._in_pool(lambda name: self.ensure(distinct[name], extra.get(name)), distinct)
        return {key: _as_written(key, outcomes[str(ref)]) for key, ref in images.items()}

    def _in_pool(self, work: Callable[[str], BackupOutcome], keys: Collection[str]) -> dict[str, BackupOutcome]:
        """``work`` of each key, run in a pool of ``parallel`` threads (registries bound it further)."""
        workers = max(1, min(self.settings.parallel, len(keys)))
        with ThreadPoolExecutor(workers, thread_name_prefix="backup") as pool:
            return dict(zip(keys, pool.map(work, keys), strict=True))

    def ensure(self, source: ImageReference, source_credentials: CredentialStore | None = None) -> BackupOutcome:
        """Ensure one image is in the backup registry and verified; never raises for registry trouble."""
        credentials = self._credentials_with(source_credentials)
        # Callers holding different credentials for the source must not share one answer.
        key = (str(source), credentials.lookup(source.registry))
        return self._flight.do(key, lambda: self._ensure(source, credentials))

    def restore(self, original: ImageReference, backup: ImageReference,
                source_credentials: CredentialStore | None = None) -> BackupOutcome:
        """Copy ``original`` again into ``backup``, the exact reference a workload uses, after the backup was lost.

        ``original`` is the upstream image the workload recorded before it was
        rewritten; the copy takes ``backup``'s pinned digest from it (the tag's
        current digest when ``backup`` is not pinned). Where upstream no longer
        has that digest, the outcome is ``missing`` and says the workload is
        unprotected. In check mode, or with ``restore=False``, nothing is copied.
        Never raises for registry trouble. A restore requested twice at once runs once.
        """
        credentials = self._credentials_with(source_credentials)
        key = (f"restore {backup} from {original}", credentials.lookup(original.registry))
        return self._flight.do(key, lambda: self._restore(original, backup, credentials))

    def copy_referrers_all(self, in_use: Mapping[str, tuple[ImageReference, BackupOutcome]]
                           ) -> dict[str, BackupOutcome]:
        """``copy_referrers`` of each backup in use (keyed as ``in_use``, each with its recorded original),
        in the service's pool: one tag list upstream per image, run side by side."""
        return self._in_pool(lambda key: self.copy_referrers(*in_use[key]), list(in_use))

    def copy_referrers(self, original: ImageReference, verified: BackupOutcome) -> BackupOutcome:
        """``verified``, the outcome of a backup a workload already uses, once what refers to its digest in
        the repository of ``original`` (the upstream image the workload recorded) is in the backup's too.

        The workload runs from its backup whatever happens upstream: a failure here (upstream gone or
        unreachable) leaves the outcome verified, with the failure as its ``reason``. Nothing happens in
        check mode, with ``referrers=False``, for an unverified outcome or for a backup in
        ``referrers_checked``. Never raises.
        """
        if verified.backup is None or not verified.verified:
            return verified
        try:
            backup = parse_reference(verified.backup)
        except InvalidReference:
            return verified
        if str(backup) in self.settings.referrers_checked:
            return verified
        key = (f"referrers of {backup} from {original}", self._credentials.lookup(original.registry))
        checked = self._flight.do(key, lambda: self._with_referrers(original, backup, verified, self._credentials))
        if checked.verified:
            return replace(checked, source=verified.source)
        return replace(verified, reason=f"its referrers upstream were not re-checked: {checked.reason}")

    def _credentials_with(self, source_credentials: CredentialStore | None) -> CredentialStore:
        """The configured credentials, completed by ``source_credentials`` where they have no entry."""
        return self._credentials if source_credentials is None else source_credentials.merged(self._credentials)

    def _registry_with(self, credentials: CredentialStore) -> RegistryClient:
        """The registry client answering with ``credentials``: the service's own without per-image ones."""
        return self._registry if credentials is self._credentials else self._registry.with_credentials(credentials)

    def _restore(self, original: ImageReference, backup: ImageReference, credentials: CredentialStore) -> BackupOutcome:
        lost = f"backup {backup} was lost"
        try:
            pinned = original.with_digest(backup.digest) if backup.digest else original
            upstream = self._registry_with(credentials).head_manifest(pinned)
        except RegistryError as error:
            return _failed(backup, f"{lost}; checking its original {original} failed: {error}", error)
        if upstream is None or (backup.digest is not None and upstream.digest != backup.digest):
            at = f" at {backup.digest}" if backup.digest else ""
            return BackupOutcome(str(backup), None, None, ImageState.MISSING,
                                 f"{lost} and its original {original}{at} no longer exists upstream in "
                                 f"{original.registry}: the workload is unprotected")
        if not self.settings.restore:
            return BackupOutcome(str(backup), None, None, ImageState.MISSING,
                                 f"{lost}; upstream {original} still has {upstream.digest} to restore it from")
        if self.settings.dry_run:
            return self._outcome(backup, backup, upstream.digest, ImageState.RESTORED,
                                 f"check mode: would restore it from {original}")
        copied = self._copy(original, backup.without_digest(), upstream, credentials)
        if not copied.verified:
            failure = f"{lost}; restoring it from {original} failed: {copied.reason}"
            return replace(copied, source=str(backup), reason=failure)
        restored = self._outcome(backup, backup, upstream.digest, ImageState.RESTORED,
                                 f"{lost}; restored from {original}")
        return self._with_referrers(original, backup, restored, credentials)

    def _ensure(self, source: ImageReference, credentials: CredentialStore) -> BackupOutcome:
        if is_backup_reference(source, self.policy):
            return self._verify_backup(source)
        try:
            if source.digest is not None:
                # A digest names its content for good: a backup holding it needs no word from upstream.
                backup, stored = self._backup_slot(source, source.digest)
                if stored is not None and stored.digest == source.digest:
                    return self._outcome(source, backup, source.digest, ImageState.PRESENT)
                upstream = self._registry_with(credentials).head_manifest(source)
            else:
                upstream = self._registry_with(credentials).head_manifest(source)
                backup, stored = self._backup_slot(source, upstream.digest if upstream else None)
            wanted = upstream.digest if upstream else source.digest
        except RegistryError as error:
            return _failed(source, str(error), error)
        except InvalidReference as error:  # a nested name over 255 characters: no backup can exist
            return _failed(source, f"cannot name its backup: {error.reason}")
        if upstream is None:
            # The disaster the product exists for: upstream is gone, the backup still serves it.
            if stored is not None and wanted in (None, stored.digest):
                return self._outcome(source, backup, stored.digest, ImageState.PRESENT, "no longer exists upstream")
            return BackupOutcome(str(source), None, None, ImageState.MISSING,
                                 f"{source} does not exist in {source.registry} and has no backup")
        if stored is not None and stored.digest == upstream.digest:
            present = self._outcome(source, backup, upstream.digest, ImageState.PRESENT)
            if str(source) in self.settings.referrers_checked:
                return present
            return self._with_referrers(source, backup, present, credentials)
        if not self.settings.copy:
            return BackupOutcome(str(source), None, None, ImageState.MISSING, f"{source} is not backed up yet")
        if self.settings.dry_run:
            return self._outcome(source, backup, upstream.digest, ImageState.COPIED, "check mode: would copy")
        return self._with_referrers(source, backup, self._copy(source, backup, upstream, credentials), credentials)

    def _with_referrers(self, source: ImageReference, backup: ImageReference, outcome: BackupOutcome,
                        credentials: CredentialStore) -> BackupOutcome:
        """``outcome`` once what refers to its digest in ``source``'s repository is in ``backup``'s too.

        Only for a verified backup whose source still exists, with ``referrers``, outside check mode; also
        with ``copy=False``, which never makes a first copy of an image, but leaves no backup in use unsigned.
        """
        digest = outcome.digest
        settings = self.settings
        if not settings.referrers or settings.dry_run or not outcome.verified or digest is None:
            return outcome
        from ansible_collections.imageclone.backup.plugins.module_utils.referrers import ReferrerError

        referrers = self._referrer_copies()
        try:
            with self._per_registry.hold(source.registry):
                copied = referrers.sync(source, digest, backup, self._registry_with(credentials), credentials)
        except ReferrerError as error:
            return BackupOutcome(outcome.source, None, None, ImageState.FAILED,
                                 f"the image is backed up, but not what refers to it: {error}",
                                 transient=error.transient)
        return replace(outcome, referrers_copied=copied)

    def _backup_slot(self, source: ImageReference, digest: str | None) -> tuple[ImageReference, ManifestInfo | None]:
        """Where ``source`` at ``digest`` is (or goes) in the backup, and what is stored there now.

        The plain backup tag is used unless it already holds other content (the
        upstream tag moved): that tag is never moved, because workloads pinned to
        its digest would then point at an untagged manifest that garbage
        collection may delete. The new content gets a digest-qualified tag.
        """
        plain = backup_reference(source, self.policy)
        stored = self._registry.head_manifest(plain.without_digest())
        if stored is None or digest is None or stored.digest == digest:
            return plain, stored
        versioned = versioned_backup_reference(source, digest, self.policy)
        return versioned, self._registry.head_manifest(versioned.without_digest())

    def _copy(self, source: ImageReference, backup: ImageReference, upstream: ManifestInfo,
              credentials: CredentialStore) -> BackupOutcome:
        try:
            with self._per_registry.hold(source.registry):
                # Copy the digest just seen, so a tag moving meanwhile cannot swap the content.
                self._copy_with_retries(source.with_digest(upstream.digest), backup, credentials)
            copied = self._registry.head_manifest(backup.without_digest())
        except CopyError as error:
            return BackupOutcome(str(source), None, None, ImageState.MISSING if error.missing else ImageState.FAILED,
                                 str(error), transient=error.transient)
        except RegistryError as error:
            return _failed(source, f"copied, but the backup could not be verified: {error}", error)
        if copied is None or copied.digest != upstream.digest:
            found = copied.digest if copied else "nothing"
            return _failed(source, f"backup {backup.without_digest()} has {found}, expected {upstream.digest}")
        return self._outcome(source, backup, upstream.digest, ImageState.COPIED)

    def _copy_with_retries(self, source: ImageReference, backup: ImageReference, credentials: CredentialStore) -> None:
        """One copy, tried again after a registry's transient server error."""
        for attempt in range(1, COPY_ATTEMPTS + 1):
            try:
                self._copier.copy(source, backup, credentials)
                return
            except CopyError as error:
                if not error.transient or attempt == COPY_ATTEMPTS:
                    raise
                time.sleep(COPY_RETRY_DELAY * attempt)

    def _verify_backup(self, backup: ImageReference) -> BackupOutcome:
        try:
            stored = self._registry.head_manifest(backup)
        except RegistryError as error:
            return _failed(backup, str(error), error)
        if stored is None:
            return BackupOutcome(str(backup), None, None, ImageState.MISSING, f"backup {backup} no longer exists")
        return BackupOutcome(str(backup), str(backup), stored.digest, ImageState.PRESENT, None)

    def _outcome(
        self, source: ImageReference, backup: ImageReference, digest: str, state: ImageState,
        reason: str | None = None
    ) -> BackupOutcome:
        pinned = pinned_reference(backup.without_digest(), digest, pin=self.settings.pin)
        return BackupOutcome(str(source), pinned, digest, state, reason)


def verify_in_use(backups: Backups, in_use: Mapping[str, ImageReference],
                  originals: Mapping[str, ImageReference]) -> dict[str, BackupOutcome]:
    """Each backup reference workloads already use, verified (one HEAD on the backup), keyed as ``in_use``;
    those with a recorded original in ``originals`` also get what refers to it upstream that the backup
    lacks (signatures added there since), one tag list each, side by side.
    """
    verified = backups.ensure_all(in_use)
    return verified | backups.copy_referrers_all({image: (originals[image], outcome)
                                                  for image, outcome in verified.items()
                                                  if outcome.verified and image in originals})


def _failed(source: ImageReference, reason: str, error: RegistryError | None = None) -> BackupOutcome:
    """A failed outcome; a registry error keeps whether it may pass, and how long a throttling registry wants."""
    return BackupOutcome(str(source), None, None, ImageState.FAILED, reason,
                         transient=isinstance(error, (RegistryUnavailable, RateLimited)),
                         retry_after=error.retry_after if isinstance(error, RateLimited) else None)


def _as_written(key: str, outcome: BackupOutcome) -> BackupOutcome:
    return replace(outcome, source=key)
