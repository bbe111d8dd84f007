"""Plans: all-or-nothing readiness, pinned targets, converged workloads, bad input as blockers."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.naming import (
    NamingPolicy,
    backup_reference,
    pinned_reference,
)
from ansible_collections.imageclone.backup.plugins.module_utils.plan import (
    BackupOutcome,
    ContainerChange,
    images_to_back_up,
    plan_workload,
)
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS, Workload, workload_from_object

POLICY = NamingPolicy("flat", "backup.example.com/backup/registry")
BACKUP_REPO = "backup.example.com/backup/registry"
DIGEST = "sha256:" + "1" * 64
SOURCE_DIGEST = "sha256:" + "2" * 64
NGINX_BACKUP = f"{BACKUP_REPO}:docker.io_library_nginx_1.27"


def workload(
    containers: dict[str, str],
    init: dict[str, str] | None = None,
    ephemeral: dict[str, str] | None = None,
    kind: str = "Deployment",
) -> Workload:
    def entries(images: dict[str, str] | None) -> list[dict[str, Any]]:
        return [{"name": name, "image": image} for name, image in (images or {}).items()]

    spec = {
        "containers": entries(containers),
        "initContainers": entries(init),
        "ephemeralContainers": entries(ephemeral),
    }
    obj = {"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "3"}}
    obj["spec"] = spec if kind == "Pod" else {"template": {"spec": spec}}
    return workload_from_object(KINDS[kind], obj)


def verified(source: str, digest: str = DIGEST, state: str = "present", policy: NamingPolicy = POLICY) -> BackupOutcome:
    """What a backup run reports for a verified copy: the pinned backup and its digest."""
    backup = backup_reference(parse_reference(source), policy)
    return BackupOutcome(source, pinned_reference(backup.without_digest(), digest), digest, state)


def outcomes(*outcome: BackupOutcome) -> dict[str, BackupOutcome]:
    return {item.source: item for item in outcome}


def present(*backups: str) -> dict[str, BackupOutcome]:
    """What verifying images that already point into the backup reports when their backups are there."""
    return {backup: BackupOutcome(backup, backup, DIGEST, "present") for backup in backups}


def test_a_fully_verified_workload_is_ready_and_pinned():
    app = workload({"app": "nginx:1.27", "cache": "redis:7.2"}, init={"init": "busybox:1.36"})
    plan = plan_workload(
        app, POLICY, outcomes(verified("nginx:1.27"), verified("redis:7.2", state="copied"), verified("busybox:1.36"))
    )
    assert plan.ready and not plan.converged
    assert plan.blockers == ()
    assert plan.changes == (
        ContainerChange(
            "initContainers", "init", "busybox:1.36", f"{BACKUP_REPO}:docker.io_library_busybox_1.36@{DIGEST}"
        ),
        ContainerChange("containers", "app", "nginx:1.27", f"{NGINX_BACKUP}@{DIGEST}"),
        ContainerChange("containers", "cache", "redis:7.2", f"{BACKUP_REPO}:docker.io_library_redis_7.2@{DIGEST}"),
    )


def test_one_unverified_image_blocks_the_whole_workload():
    app = workload({"app": "nginx:1.27", "cache": "redis:7.2"}, init={"init": "busybox:1.36"})
    missing = BackupOutcome("redis:7.2", None, None, "missing", "manifest unknown upstream")
    failed = BackupOutcome("busybox:1.36", None, None, "failed", "copy timed out")
    plan = plan_workload(app, POLICY, outcomes(verified("nginx:1.27"), missing, failed))
    assert not plan.ready and not plan.converged
    assert plan.blockers == (
        "initContainers 'init': image 'busybox:1.36' is not backed up (failed: copy timed out)",
        "containers 'cache': image 'redis:7.2' is not backed up (missing: manifest unknown upstream)",
    )


def test_an_image_without_any_result_blocks_too():
    plan = plan_workload(workload({"app": "nginx:1.27"}), POLICY, {})
    assert plan.blockers == ("containers 'app': image 'nginx:1.27' has no backup result",)


def test_results_are_matched_by_the_image_string_as_written():
    app = workload({"app": "docker.io/library/nginx:1.27"})
    assert not plan_workload(app, POLICY, outcomes(verified("nginx:1.27"))).ready
    assert plan_workload(app, POLICY, outcomes(verified("docker.io/library/nginx:1.27"))).ready


def test_tag_only_rewrites_without_pin():
    plan = plan_workload(workload({"app": "nginx:1.27"}), POLICY, outcomes(verified("nginx:1.27")), pin=False)
    assert plan.changes[0].after == NGINX_BACKUP


@pytest.mark.parametrize("pin", [True, False])
def test_digest_referenced_sources_keep_their_digest(pin):
    source = f"nginx:1.27@{SOURCE_DIGEST}"
    plan = plan_workload(workload({"app": source}), POLICY, outcomes(verified(source, SOURCE_DIGEST)), pin=pin)
    assert plan.changes[0].after == f"{NGINX_BACKUP}@{SOURCE_DIGEST}"


def test_digest_only_sources_are_pinned_on_their_digest_tag():
    source = f"nginx@{SOURCE_DIGEST}"
    plan = plan_workload(workload({"app": source}), POLICY, outcomes(verified(source, SOURCE_DIGEST)), pin=False)
    assert plan.changes[0].after == f"{BACKUP_REPO}:docker.io_library_nginx_.sha256-{'2' * 64}@{SOURCE_DIGEST}"


def test_a_copy_with_another_digest_than_the_pinned_source_blocks():
    source = f"nginx:1.27@{SOURCE_DIGEST}"
    plan = plan_workload(workload({"app": source}), POLICY, outcomes(verified(source, DIGEST)))
    assert not plan.ready
    assert "cannot be rewritten" in plan.blockers[0] and SOURCE_DIGEST in plan.blockers[0]


def test_a_verified_result_without_digest_cannot_be_pinned():
    unpinned = BackupOutcome("nginx:1.27", NGINX_BACKUP, None, "present")
    assert "no digest" in plan_workload(workload({"app": "nginx:1.27"}), POLICY, outcomes(unpinned)).blockers[0]
    plan = plan_workload(workload({"app": "nginx:1.27"}), POLICY, outcomes(unpinned), pin=False)
    assert plan.ready and plan.changes[0].after == NGINX_BACKUP


def test_the_digest_may_come_from_the_pinned_backup_reference():
    outcome = BackupOutcome("nginx:1.27", f"{NGINX_BACKUP}@{DIGEST}", None, "present")
    plan = plan_workload(workload({"app": "nginx:1.27"}), POLICY, outcomes(outcome))
    assert plan.changes[0].after == f"{NGINX_BACKUP}@{DIGEST}"


@pytest.mark.parametrize(
    ("backup", "digest", "message"),
    [
        ("elsewhere.example.com/x:docker.io_library_nginx_1.27", DIGEST, "the naming policy puts it at"),
        (f"{NGINX_BACKUP}@{SOURCE_DIGEST}", DIGEST, f"pins {SOURCE_DIGEST}, but reports digest {DIGEST}"),
        ("not a reference", DIGEST, "invalid image reference"),
    ],
)
def test_inconsistent_backup_results_block(backup, digest, message):
    plan = plan_workload(
        workload({"app": "nginx:1.27"}), POLICY, outcomes(BackupOutcome("nginx:1.27", backup, digest, "copied"))
    )
    assert not plan.ready and message in plan.blockers[0]


def test_workloads_already_on_their_backups_are_converged():
    images = {"app": f"{NGINX_BACKUP}@{DIGEST}", "init": f"{BACKUP_REPO}:docker.io_library_busybox_1.36"}
    app = workload({"app": images["app"]}, init={"init": images["init"]})
    plan = plan_workload(app, POLICY, present(*images.values()))
    assert plan.converged and plan.ready and plan.changes == ()


@pytest.mark.parametrize("lost", [
    None,
    BackupOutcome(f"{NGINX_BACKUP}@{DIGEST}", None, None, "missing",
                  f"backup {NGINX_BACKUP}@{DIGEST} was lost and its original nginx:1.27 no longer exists upstream"),
    BackupOutcome(f"{NGINX_BACKUP}@{DIGEST}", None, None, "failed", "registry backup.example.com: 503"),
])
def test_a_workload_on_an_unverified_backup_is_neither_ready_nor_converged(lost):
    app = workload({"app": f"{NGINX_BACKUP}@{DIGEST}"})
    plan = plan_workload(app, POLICY, {} if lost is None else {lost.source: lost})
    assert not plan.ready and not plan.converged and plan.changes == ()
    assert plan.blockers[0].startswith(f"containers 'app': image '{NGINX_BACKUP}@{DIGEST}'")
    if lost is not None:
        assert lost.reason in plan.blockers[0]


def test_a_restored_backup_is_verified():
    restored = BackupOutcome(f"{NGINX_BACKUP}@{DIGEST}", f"{NGINX_BACKUP}@{DIGEST}", DIGEST, "restored")
    assert plan_workload(workload({"app": restored.source}), POLICY, {restored.source: restored}).converged


def test_an_image_whose_nested_backup_name_is_too_long_blocks_its_workload_naming_it():
    nested = NamingPolicy("nested", "backup.example.com/mirror")
    long_image = "registry.example.com/" + "/".join(["component"] * 23) + ":1"  # a 250-character name
    app = workload({"app": "nginx:1.27", "long": long_image})
    assert list(images_to_back_up([app], nested)) == ["nginx:1.27"]
    plan = plan_workload(app, nested, outcomes(verified("nginx:1.27", policy=nested)))
    assert not plan.ready
    [blocker] = plan.blockers
    assert blocker.startswith(f"containers 'long': image {long_image!r} cannot be backed up: nested backup name "
                              "backup.example.com/mirror/registry.example.com/component/")
    assert blocker.endswith("would be 276 characters long, more than 255")


def test_planning_the_rewritten_workload_again_converges():
    sources = {"app": "nginx:1.27", "cache": f"redis:7.2@{SOURCE_DIGEST}"}
    results = outcomes(verified("nginx:1.27"), verified(sources["cache"], SOURCE_DIGEST))
    first = plan_workload(workload(sources), POLICY, results)
    rewritten = workload({change.container: change.after for change in first.changes})
    assert plan_workload(rewritten, POLICY, results | present(*(c.after for c in first.changes))).converged
    assert images_to_back_up([rewritten], POLICY) == {}


def test_nested_policies_plan_the_same_way():
    nested = NamingPolicy("nested", "backup.example.com/mirror")
    plan = plan_workload(workload({"app": "nginx:1.27"}), nested, outcomes(verified("nginx:1.27", policy=nested)))
    assert plan.changes[0].after == f"backup.example.com/mirror/docker.io/library/nginx:1.27@{DIGEST}"
    rewritten = workload({"app": plan.changes[0].after})
    assert plan_workload(rewritten, nested, present(plan.changes[0].after)).converged


def test_ephemeral_containers_are_backed_up_but_never_rewritten():
    pod = workload({"app": "nginx:1.27"}, ephemeral={"debug": "busybox:1.36"}, kind="Pod")
    assert set(images_to_back_up([pod], POLICY)) == {"nginx:1.27", "busybox:1.36"}
    plan = plan_workload(pod, POLICY, outcomes(verified("nginx:1.27"), verified("busybox:1.36")))
    assert plan.ready
    assert [change.section for change in plan.changes] == ["containers"]


def test_every_image_gates_readiness_even_an_ephemeral_one():
    pod = workload({"app": "nginx:1.27"}, ephemeral={"debug": "busybox:1.36"}, kind="Pod")
    plan = plan_workload(pod, POLICY, outcomes(verified("nginx:1.27")))
    assert plan.blockers == ("ephemeralContainers 'debug': image 'busybox:1.36' has no backup result",)


def test_malformed_images_block_the_plan_instead_of_raising():
    app = workload({"app": "nginx:1.27", "bad": "nginx::1.27", "empty": ""})
    plan = plan_workload(app, POLICY, outcomes(verified("nginx:1.27")))
    assert not plan.ready
    assert plan.blockers == app.problems
    assert len(plan.blockers) == 2
    assert images_to_back_up([app], POLICY) == {"nginx:1.27": parse_reference("nginx:1.27")}


def test_jobs_are_backed_up_but_never_rewritten():
    job = workload({"main": "nginx:1.27"}, kind="Job")
    assert list(images_to_back_up([job], POLICY)) == ["nginx:1.27"]
    plan = plan_workload(job, POLICY, outcomes(verified("nginx:1.27")))
    assert not plan.ready
    assert plan.blockers == (
        "Job pod templates are immutable: the images are backed up, but Job/shop/web must be recreated to use them",
    )
    backed_up = f"{NGINX_BACKUP}@{DIGEST}"
    assert plan_workload(workload({"main": backed_up}, kind="Job"), POLICY, present(backed_up)).converged


def test_images_to_back_up_are_unique_and_skip_backups():
    first = workload({"app": "nginx:1.27", "side": "redis:7.2"})
    second = workload(
        {"app": "nginx:1.27", "done": f"{NGINX_BACKUP}@{DIGEST}", "other": "docker.io/library/nginx:1.27"}
    )
    wanted = images_to_back_up([first, second], POLICY)
    assert list(wanted) == ["nginx:1.27", "redis:7.2", "docker.io/library/nginx:1.27"]
    assert wanted["docker.io/library/nginx:1.27"] == wanted["nginx:1.27"]


def test_an_owned_jobs_plan_is_not_blocked_by_its_immutable_template():
    """Its owner recreates the Job from its own spec; the plan only says what the owner should point at."""
    spec = {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
    owners = [{"kind": "Workflow", "name": "nightly", "controller": True}]
    owned = workload_from_object(KINDS["Job"], {"metadata": {"name": "j", "ownerReferences": owners}, "spec": spec})
    plain = workload_from_object(KINDS["Job"], {"metadata": {"name": "j"}, "spec": spec})
    backed_up = outcomes(verified("nginx:1.27"))
    assert plan_workload(owned, POLICY, backed_up).ready and plan_workload(owned, POLICY, backed_up).changes
    assert "immutable" in " ".join(plan_workload(plain, POLICY, backed_up).blockers)
