"""Remember verified backups for a while, so a converged workload reconciles with no registry request.

Wraps the engine's ``BackupService`` (same ``ensure_all``/``restore``/``policy``/
``settings`` surface, which is all ``Migration`` uses). A *verified* outcome
(copied, present, restored) is reused for ``ttl`` seconds per image reference;
anything else (missing, failed) is never cached, so retries really retry.
``clear`` drops everything: the periodic resync calls it, which makes every
resync re-verify every backup with a HEAD and lets the engine restore a lost
one from the workload's recorded original; it also looks again for what
refers to each image upstream, so a signature added there later is copied then.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from imageclone_controller.engine import backup, credentials, naming, plan, reference, registry

BackupOutcome = plan.BackupOutcome


class CachedBackups:
    """A ``backup.Backups`` in front of another (the engine's ``BackupService``)."""

    def __init__(self, service: backup.Backups, ttl: float, *, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 50_000,
                 on_checked: Callable[[BackupOutcome], None] = lambda outcome: None) -> None:
        self._service = service
        self._on_checked = on_checked
        self._ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._verified: dict[str, tuple[float, BackupOutcome]] = {}
        self._referrers_checked: dict[tuple[str, str], float] = {}
        self.hits = 0
        self.misses = 0

    @property
    def policy(self) -> naming.NamingPolicy:
        return self._service.policy

    @property
    def settings(self) -> backup.BackupSettings:
        return self._service.settings

    @property
    def registry(self) -> registry.RegistryClient:
        return self._service.registry

    @property
    def service(self) -> backup.Backups:
        return self._service

    def restore(self, original: reference.ImageReference, lost: reference.ImageReference,
                source_credentials: credentials.CredentialStore | None = None) -> BackupOutcome:
        """Uncached: the engine calls this to restore a lost backup, which must really happen."""
        return self._service.restore(original, lost, source_credentials)

    def copy_referrers_all(self, in_use: Mapping[str, tuple[reference.ImageReference, BackupOutcome]]
                           ) -> dict[str, BackupOutcome]:
        """Like ``BackupService.copy_referrers_all``, at most once per backup and original until ``ttl`` or
        ``clear``: the others are answered as given, with no registry request."""
        now = self._clock()
        with self._lock:
            due = {key: pair for key, pair in in_use.items()
                   if self._referrers_checked.get(_referrers_key(*pair), 0.0) <= now}
        checked = self._service.copy_referrers_all(due) if due else {}
        with self._lock:
            for key, outcome in checked.items():
                if outcome.reason is None:
                    if len(self._referrers_checked) >= self._max_entries:
                        self._referrers_checked.clear()
                    self._referrers_checked[_referrers_key(*due[key])] = now + self._ttl
        return {key: checked.get(key, verified) for key, (_original, verified) in in_use.items()}

    def ensure_all(self, images: Mapping[str, reference.ImageReference],
                   source_credentials: Mapping[str, credentials.CredentialStore] | None = None,
                   ) -> dict[str, BackupOutcome]:
        """Like ``BackupService.ensure_all``, answering recently verified references from memory."""
        now = self._clock()
        results: dict[str, BackupOutcome] = {}
        wanted: dict[str, reference.ImageReference] = {}
        with self._lock:
            for key, reference in images.items():
                cached = self._verified.get(str(reference))
                if cached is not None and cached[0] > now:
                    results[key] = replace(cached[1], source=key, referrers_copied=0)  # copied back then
                else:
                    wanted[key] = reference
            self.hits += len(results)
            self.misses += len(wanted)
        if not wanted:
            return results
        given = source_credentials or {}
        fresh = self._service.ensure_all(wanted, {key: given[key] for key in wanted if key in given})
        for outcome in fresh.values():
            self._on_checked(outcome)
        with self._lock:
            if len(self._verified) >= self._max_entries:
                self._verified.clear()
            for key, outcome in fresh.items():
                if outcome.verified:
                    self._verified[str(wanted[key])] = (now + self._ttl, outcome)
        return results | fresh

    def clear(self) -> None:
        with self._lock:
            self._verified.clear()
            self._referrers_checked.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._verified)


def _referrers_key(original: reference.ImageReference, verified: BackupOutcome) -> tuple[str, str]:
    return str(verified.backup), str(original)
