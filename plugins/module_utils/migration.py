"""One migration pass over a cluster: discover, back up, then rewrite what is verified.

The Ansible modules, the migration playbook and the controller all go through
this service, so they make the same decisions: a workload is rewritten only
when every one of its images is verified in the backup registry, and a
converged workload costs no write.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ansible_collections.imageclone.backup.plugins.module_utils.backup import Backups, verify_in_use
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore, PullSecret
from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions, backup_service
from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi, KubeApiError, api_from_options
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy, is_backup_reference
from ansible_collections.imageclone.backup.plugins.module_utils.plan import (
    BackupOutcome,
    WorkloadPlan,
    images_to_back_up,
    plan_workload,
)
from ansible_collections.imageclone.backup.plugins.module_utils.pullcredentials import (
    PullSecretReader,
    SourceCredentials,
    workload_source_credentials,
)
from ansible_collections.imageclone.backup.plugins.module_utils.pullsecret import (
    PullSecretError,
    ensure_pull_secret,
)
from ansible_collections.imageclone.backup.plugins.module_utils.reference import (
    ImageReference,
    InvalidReference,
    parse_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryError
from ansible_collections.imageclone.backup.plugins.module_utils.rewrite import (
    ORIGINAL_IMAGES,
    RewriteError,
    RewriteResult,
    apply,
    original_images,
    revert,
    reverting_changes,
)
from ansible_collections.imageclone.backup.plugins.module_utils.states import (
    PASS_WORKLOAD_STATES,
    ImageState,
    WorkloadState,
)
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import (
    KINDS,
    DiscoveryResult,
    Kind,
    Skipped,
    Workload,
    discover,
    without_terminating_namespaces,
)

# Workloads rewritten at once in one pass. Each rewrite is a few requests that mostly wait on the API
# server (and etcd's fsync): one at a time, a pass of 1,000 workloads spends most of its time waiting.
# Eight in flight is a small share of the API server's default 200 concurrent writes.
REWRITE_CONCURRENCY: Final = 8


@dataclass(frozen=True)
class Scope:
    """Which workloads a pass looks at."""

    kinds: tuple[Kind, ...] = tuple(KINDS.values())
    namespaces: tuple[str, ...] | None = None
    ignore_namespaces: tuple[str, ...] = ()
    skip_gitops: bool = False
    # (kind name, namespace, name) of the only workloads to read, or None for all of them.
    only: frozenset[tuple[str, str, str]] | None = None

    @classmethod
    def of(cls, kinds: Iterable[str] | None = None, **fields: Any) -> Scope:
        """A scope from kind names; raises ``ValueError`` naming an unknown kind."""
        names = list(kinds) if kinds else list(KINDS)
        unknown = [name for name in names if name not in KINDS]
        if unknown:
            raise ValueError(f"unknown workload kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
        return cls(kinds=tuple(KINDS[name] for name in names), **fields)


@dataclass(frozen=True)
class WorkloadReport:
    """What a pass did to one workload."""

    key: str
    state: WorkloadState
    reason: str | None = None
    managed_by: str | None = None
    result: RewriteResult | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", WorkloadState(self.state))  # "failed" and WorkloadState.FAILED alike


@dataclass(frozen=True)
class MigrationReport:
    """Everything one pass found and did."""

    workloads: tuple[WorkloadReport, ...]
    images: Mapping[str, BackupOutcome]
    skipped: tuple[Skipped, ...]

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts of workloads and images by state (every state present, zeros included)."""
        workload_counts = Counter(report.state for report in self.workloads)
        image_counts = Counter(outcome.state for outcome in self.images.values())
        workloads = {state.value: workload_counts[state] for state in PASS_WORKLOAD_STATES}
        return {
            "workloads": workloads | {"skipped": len(self.skipped)},
            "images": {state.value: image_counts[state] for state in ImageState},
        }

    @property
    def changed(self) -> bool:
        return any(r.state is WorkloadState.REWRITTEN for r in self.workloads) or any(
            o.state.wrote for o in self.images.values()
        )


class Migration:
    """Discover → back up → rewrite, with one ``Backups`` (a ``BackupService``) and one ``KubeApi``.

    With ``use_pull_secrets``, an image the configured credentials could not back up is tried again with
    the pull Secrets of the workloads using it (see ``pullcredentials``), read in that pass.
    """

    def __init__(
        self,
        api: KubeApi,
        backups: Backups,
        scope: Scope = Scope(),
        pull_secret: PullSecret | None = None,
        *,
        use_pull_secrets: bool = False,
    ) -> None:
        self.api = api
        self.backups = backups
        self.scope = scope
        self.pull_secret = pull_secret
        self.use_pull_secrets = use_pull_secrets
        self._secret_namespaces: set[str] = set()

    @classmethod
    def from_options(
        cls,
        connection: Mapping[str, Any],
        options: BackupOptions,
        scope: Scope,
        *,
        dry_run: bool = False,
        copy: bool = True,
        restore: bool = True,
        pull_secret_name: str | None = None,
        referrers_checked: Iterable[str] = (),
    ) -> Migration:
        """The whole pipeline for one cluster, from module-style connection and backup options."""
        pull_secret = options.pull_secret(pull_secret_name) if pull_secret_name else None
        backups = backup_service(options, dry_run=dry_run, copy=copy, restore=restore,
                                 referrers_checked=referrers_checked)
        return cls(api_from_options(connection, pool_size=REWRITE_CONCURRENCY), backups, scope, pull_secret,
                   use_pull_secrets=options.use_pull_secrets)

    @property
    def dry_run(self) -> bool:
        return self.backups.settings.dry_run

    def discover(self) -> DiscoveryResult:
        """The workloads in scope, and what was skipped with reasons (namespaces being deleted included)."""
        found = discover(self.api, self.scope.kinds, self.scope.namespaces,
                         self.scope.ignore_namespaces, self.scope.skip_gitops, self.scope.only)
        return without_terminating_namespaces(self.api, found)

    def back_up(self, workloads: Iterable[Workload]) -> dict[str, BackupOutcome]:
        """Ensure every image of ``workloads`` is in the backup, keyed by image string as written.

        Images that already point into the backup are verified with one HEAD,
        and get what refers to their recorded original upstream that they lack
        (``verify_in_use``).
        A backup found lost is restored from the original recorded on the
        workload (``imageclone.io/original-images``), at the pinned digest,
        into the very reference the workload uses (state ``restored``) while
        upstream still has it; otherwise it stays ``missing`` with a reason
        naming the backup and the original, which blocks the workload as
        unprotected. The settings decide whether a restore really copies.
        """
        workloads = list(workloads)
        policy = self.backups.policy
        wanted = images_to_back_up(workloads, policy)
        # One reader per pass: a Secret created or rotated since the last pass is read afresh.
        reader = PullSecretReader(self.api) if self.use_pull_secrets else None
        # The configured credentials first: the workloads' pull Secrets (and their ServiceAccounts) are read
        # only for the images not backed up without them, so public images cost no request to the API server.
        outcomes = self.backups.ensure_all(wanted)
        unverified = {image: wanted[image] for image, outcome in outcomes.items() if not outcome.verified}
        if unverified:
            access = self._source_credentials(reader, workloads, unverified)
            lent = {image: unverified[image] for image in access.stores}
            retried = self.backups.ensure_all(lent, access.stores) if lent else {}
            outcomes |= access.explain({image: retried.get(image, outcomes[image]) for image in unverified})
        in_backup = {image.image: image.reference for w in workloads for image in w.images
                     if image.reference is not None and is_backup_reference(image.reference, policy)}
        originals = backups_in_use(workloads, policy)
        verified = verify_in_use(self.backups, in_backup, originals)
        for image, outcome in verified.items():
            if outcome.state is ImageState.MISSING:
                restore_access = self._source_credentials(reader, workloads, {image})
                restored = self._restore(in_backup[image], originals.get(image), outcome,
                                         restore_access.stores.get(image))
                verified[image] = restore_access.explain({image: restored})[image]
        return outcomes | verified

    @staticmethod
    def _source_credentials(reader: PullSecretReader | None, workloads: list[Workload],
                            images: Collection[str]) -> SourceCredentials:
        if reader is None or not images:
            return SourceCredentials({}, {})
        return workload_source_credentials(reader, workloads, images)

    def _restore(self, backup: ImageReference, original: ImageReference | None, lost: BackupOutcome,
                 source_credentials: CredentialStore | None) -> BackupOutcome:
        if original is None:
            return replace(lost, reason=f"backup {backup} was lost and no original image is recorded to restore "
                                        f"it from ({ORIGINAL_IMAGES}): the workload is unprotected")
        return replace(self.backups.restore(original, backup, source_credentials), source=lost.source)

    def rewrite(self, workload: Workload, outcomes: Mapping[str, BackupOutcome]) -> WorkloadReport:
        """Rewrite one workload if all its images are verified; never raises for API or input trouble."""
        policy, pin = self.backups.policy, self.backups.settings.pin
        known = dict(outcomes)

        def replan(current: Workload):
            # After a 409 the re-read object may run images this pass never verified (our own
            # rewrite, seen through a stale cache, or a user's change): verify them first.
            if any(image.reference is not None and image.image not in known for image in current.images):
                known.update(self.back_up([current]))
            return plan_workload(current, policy, known, pin=pin)

        plan = replan(workload)
        if not plan.ready:
            return WorkloadReport(workload.key, WorkloadState.BLOCKED, "; ".join(plan.blockers), workload.managed_by)
        if workload.left_to_owner and plan.changes:
            return WorkloadReport(workload.key, WorkloadState.OWNED, _owner_reason(workload.left_to_owner, plan),
                                  workload.managed_by)
        try:
            secret_name = self._pull_secret_for(workload) if plan.changes else None
            result = apply(self.api, plan, replan, pull_secret=secret_name, dry_run=self.dry_run)
        except RewriteError as error:
            return WorkloadReport(workload.key, WorkloadState.BLOCKED, str(error), workload.managed_by)
        except (KubeApiError, PullSecretError) as error:
            return WorkloadReport(workload.key, WorkloadState.FAILED, str(error), workload.managed_by)
        state = WorkloadState.REWRITTEN if result.changed else WorkloadState.UNCHANGED
        return WorkloadReport(workload.key, state, None, workload.managed_by, result)

    def rewrite_each(self, workloads: Sequence[Workload],
                     outcomes: Mapping[str, BackupOutcome]) -> list[WorkloadReport]:
        """``rewrite`` for each of ``workloads`` (reports in the same order), up to ``REWRITE_CONCURRENCY``
        at once."""
        if len(workloads) < 2:
            return [self.rewrite(workload, outcomes) for workload in workloads]
        with ThreadPoolExecutor(min(REWRITE_CONCURRENCY, len(workloads)), "rewrite") as pool:
            return list(pool.map(lambda workload: self.rewrite(workload, outcomes), workloads))

    def revert(self, workload: Workload, *, force: bool = False) -> WorkloadReport:
        """Restore the images recorded before the rewrite; never raises for API, registry or input trouble.

        Each original is looked up upstream first (HEAD): reverting to an image
        that no longer exists would leave pods unable to pull, so such a workload
        stays on its backup and is ``blocked`` with the reason, unless ``force``.
        """
        try:
            gone = [] if force else self._originals_gone(workload)
            if gone:
                reason = "; ".join(gone) + ": left on its backup (force reverts anyway)"
                return WorkloadReport(workload.key, WorkloadState.BLOCKED, reason, workload.managed_by)
            result = revert(self.api, workload, dry_run=self.dry_run)
        except (RewriteError, KubeApiError) as error:
            return WorkloadReport(workload.key, WorkloadState.FAILED, str(error), workload.managed_by)
        state = WorkloadState.REVERTED if result.changed else WorkloadState.UNCHANGED
        return WorkloadReport(workload.key, state, None, workload.managed_by, result)

    def _originals_gone(self, workload: Workload) -> list[str]:
        """Why some recorded original of ``workload`` cannot be reverted to, one entry per container."""
        problems = []
        for change in reverting_changes(workload):
            where = f"{change.section} {change.container!r}: original image {change.after!r}"
            try:
                found = self.backups.registry.head_manifest(parse_reference(change.after))
            except InvalidReference as error:
                problems.append(f"{where} is not a valid reference: {error.reason}")
                continue
            except RegistryError as error:
                problems.append(f"{where} could not be looked up: {error}")
                continue
            if found is None:
                problems.append(f"{where} no longer exists upstream")
        return problems

    def forget_pull_secrets(self) -> None:
        """Check each namespace's pull Secret again on next use (a long-running caller's resync)."""
        self._secret_namespaces.clear()

    def _pull_secret_for(self, workload: Workload) -> str | None:
        if self.pull_secret is None:
            return None
        secret = self.pull_secret
        if workload.namespace not in self._secret_namespaces:
            ensure_pull_secret(self.api, workload.namespace, secret.registry, secret.username, secret.password,
                               name=secret.name, dry_run=self.dry_run)
            self._secret_namespaces.add(workload.namespace)
        return secret.name

    def run(self) -> MigrationReport:
        """One whole pass over the scope."""
        found = self.discover()
        outcomes = self.back_up(found.workloads)
        reports = tuple(self.rewrite_each(found.workloads, outcomes))
        return MigrationReport(reports, outcomes, found.skipped)


def _owner_reason(owner: str, plan: WorkloadPlan) -> str:
    wanted = "; ".join(f"{change.before} -> {change.after}" for change in plan.changes)
    return f"owned by {owner}: backed up, rewrite left to the owner; configure {owner} to use {wanted}"


def backups_in_use(workloads: Iterable[Workload], policy: NamingPolicy) -> dict[str, ImageReference]:
    """Each image (as written) of ``workloads`` that points into the backup, with the source image a workload
    recorded before it was rewritten to it (``imageclone.io/original-images``); the first record wins, and a
    backup with no valid record is left out."""
    found: dict[str, ImageReference] = {}
    for workload in workloads:
        try:
            recorded = original_images(workload)
        except RewriteError:
            continue
        for image in workload.images:
            original = recorded.get(image.section, {}).get(image.container)
            if (not original or image.image in found or image.reference is None
                    or not is_backup_reference(image.reference, policy)):
                continue
            try:
                found[image.image] = parse_reference(original)
            except InvalidReference:
                continue
    return found
