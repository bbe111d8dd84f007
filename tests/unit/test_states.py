"""States are enums with one definition, and a failed backup keeps what the registry said about retrying."""
from __future__ import annotations

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.results import outcome
from ansible_collections.imageclone.backup.plugins.module_utils.backup import BackupService
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.migration import WorkloadReport
from ansible_collections.imageclone.backup.plugins.module_utils.naming import NamingPolicy
from ansible_collections.imageclone.backup.plugins.module_utils.plan import BackupOutcome
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import (
    RateLimited,
    RegistryAuthError,
    RegistryUnavailable,
)
from ansible_collections.imageclone.backup.plugins.module_utils.skopeo import Skopeo
from ansible_collections.imageclone.backup.plugins.module_utils.states import (
    PASS_WORKLOAD_STATES,
    ImageState,
    WorkloadState,
)

NGINX = parse_reference("nginx:1.27")


class FailingRegistry:
    """A registry client whose every HEAD fails with ``error`` (pure logic: no registry involved)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def head_manifest(self, reference):
        raise self.error


def test_an_unknown_state_is_refused_where_it_is_made():
    with pytest.raises(ValueError, match="'copyed' is not a valid ImageState"):
        BackupOutcome("nginx:1.27", None, None, "copyed")
    with pytest.raises(ValueError, match="'rewriten' is not a valid WorkloadState"):
        WorkloadReport("Deployment/shop/web", "rewriten")


def test_states_are_plain_strings_in_results_and_know_what_they_mean():
    made = BackupOutcome("nginx:1.27", "b:t@sha256:1", "sha256:1", "copied")
    assert made.state is ImageState.COPIED and made.verified and made.state.wrote
    assert type(outcome(made)["state"]) is str and outcome(made)["state"] == "copied"
    assert [state for state in ImageState if state.verified] == ["copied", "present", "restored"]
    assert [state for state in WorkloadState if state.trouble] == ["blocked", "failed"]
    assert "reverted" not in PASS_WORKLOAD_STATES and len(PASS_WORKLOAD_STATES) == len(WorkloadState) - 1


@pytest.mark.parametrize("error, transient, retry_after", [
    (RateLimited(NGINX, "HTTP 429 after 4 attempts", 42.0), True, 42.0),
    (RegistryUnavailable(NGINX, "no answer"), True, None),
    (RegistryAuthError(NGINX, "HTTP 401"), False, None),
])
def test_a_failed_backup_keeps_whether_it_may_pass_and_how_long_to_wait(error, transient, retry_after):
    service = BackupService(FailingRegistry(error), Skopeo(), CredentialStore(),
                            NamingPolicy("flat", "backup.example.com/mirror/images"))
    failed = service.ensure(NGINX)
    assert (failed.state, failed.transient, failed.retry_after) == (ImageState.FAILED, transient, retry_after)
    assert str(error) in failed.reason
