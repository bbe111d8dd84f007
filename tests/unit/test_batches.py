"""The migration playbook's rewrite batches, from registered results shaped as the modules return them."""
from __future__ import annotations

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.batches import rewrite_batches

BACKUP = "backup.example.com/platform/images"


def found(name: str, *images: str, rewrite: bool = False, problems: tuple[str, ...] = ()) -> dict:
    return {"key": f"Deployment/shop/{name}", "kind": "Deployment", "namespace": "shop", "name": name,
            "managed_by": None, "problems": list(problems), "images": [{"image": image} for image in images],
            "rewrite": [{"before": images[0], "after": f"{BACKUP}:x"}] if rewrite else []}


def in_use(source: str, state: str = "present") -> dict:
    return {"source": source, "state": state}


def ids(batches: list[list[dict]]) -> list[list[str]]:
    return [[workload["name"] for workload in batch] for batch in batches]


WEB = f"{BACKUP}:docker.io_library_nginx_1.27@sha256:{'a' * 64}"
DB = f"{BACKUP}:docker.io_library_postgres_16@sha256:{'b' * 64}"


def test_workloads_on_backups_found_whole_are_reported_unchanged_and_the_others_batched_in_order():
    discovered = {"workloads": [found("web", WEB), found("new", "nginx:1.27", rewrite=True), found("db", WEB, DB),
                                found("half", WEB, "redis:7", rewrite=True), found("api", "httpd:2")]}

    planned = rewrite_batches(discovered, [in_use(WEB), in_use(DB, "restored")], 2)

    assert ids(planned["batches"]) == [["new", "half"], ["api"]]
    assert planned["batches"][0][0] == {"kind": "Deployment", "namespace": "shop", "name": "new"}
    assert [(report["key"], report["state"]) for report in planned["converged"]] == [
        ("Deployment/shop/web", "unchanged"), ("Deployment/shop/db", "unchanged")]


@pytest.mark.parametrize("state", ["missing", "failed"])
def test_a_backup_lost_or_not_looked_up_keeps_its_workloads_in_the_batches(state):
    discovered = {"workloads": [found("web", WEB), found("db", WEB, DB)]}

    planned = rewrite_batches(discovered, [in_use(WEB), in_use(DB, state)], 25)

    assert ids(planned["batches"]) == [["db"]]


def test_a_backup_the_backup_task_never_saw_keeps_its_workload_in_the_batches():
    # No recorded original: discovery leaves the backup out of backups_in_use, the rewrite verifies it.
    planned = rewrite_batches({"workloads": [found("web", WEB), found("odd", DB)]}, [in_use(WEB)], 25)

    assert ids(planned["batches"]) == [["odd"]]


def test_a_workload_with_problems_or_without_images_is_left_to_the_rewrite():
    discovered = {"workloads": [found("bad", WEB, problems=("containers 'x': image is empty",)), found("none")]}

    assert ids(rewrite_batches(discovered, [in_use(WEB)], 25)["batches"]) == [["bad", "none"]]


def test_each_batch_is_told_only_the_checked_images_its_own_workloads_use():
    discovered = {"workloads": [found("new", "nginx:1.27", rewrite=True), found("half", WEB, "redis:7", rewrite=True),
                                found("api", "httpd:2", "nginx:1.27", rewrite=True)]}

    planned = rewrite_batches(discovered, [], 2, referrers_checked=iter(["nginx:1.27", WEB, "httpd:2", "mysql:8"]))

    assert ids(planned["batches"]) == [["new", "half"], ["api"]]
    assert planned["referrers_checked"] == [sorted(["nginx:1.27", WEB]), ["httpd:2", "nginx:1.27"]]


def test_without_checked_images_every_batch_is_told_none():
    planned = rewrite_batches({"workloads": [found("new", "nginx:1.27", rewrite=True)]}, [], 25)

    assert planned["referrers_checked"] == [[]]


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1, not 0"):
        rewrite_batches({"workloads": []}, [], 0)
