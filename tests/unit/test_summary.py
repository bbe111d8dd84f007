"""The migration playbook's summary, from registered results shaped as the modules return them."""
from __future__ import annotations

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.summary import migration_summary


def workload(name: str, state: str = "rewritten", reason: str | None = None) -> dict:
    return {"key": f"Deployment/shop/{name}", "kind": "Deployment", "namespace": "shop", "name": name,
            "state": state, "reason": reason}


def image(source: str, state: str = "present", reason: str | None = None) -> dict:
    return {"source": source, "state": state, "reason": reason}


def batch(*reports: dict, images: tuple[dict, ...] = (), **flags) -> dict:
    item = [{key: report[key] for key in ("kind", "namespace", "name")} for report in reports]
    return {"item": item, "workloads": list(reports), "images": list(images), **flags}


def discovered(*names: str, skipped: int = 0) -> dict:
    return {"workloads": [{"kind": "Deployment", "namespace": "shop", "name": name, "images": []} for name in names],
            "skipped_workloads": [{"kind": "ReplicaSet", "namespace": "shop", "name": "x"}] * skipped}


def test_counts_every_state_and_lists_what_the_run_could_not_finish():
    attempted = [
        batch(workload("web"), workload("api", "owned", "owned by Widget/k8s: backed up"),
              images=(image("nginx:1.27"), image("redis:7", "restored"))),
        batch(workload("db", "blocked", "postgres:16 is missing from the backup"), workload("ci", "unchanged"),
              images=(image("nginx:1.27", "copied"),)),
    ]
    backed_up = [image("nginx:1.27", "copied"), image("postgres:16", "failed", "HTTP 500")]

    summary = migration_summary(attempted, backed_up, discovered("web", "api", "db", "ci", skipped=2))

    assert summary["lines"] == [
        "workloads: 4 (rewritten 1, unchanged 1, owned 1, blocked 1, failed 0), skipped 2",
        # nginx once, as the backup task found it; redis only the rewrite saw (restored when lost)
        "images: 3 (copied 1, present 0, restored 1, missing 0, failed 1)",
        "owned: Deployment/shop/api: owned by Widget/k8s: backed up",
        "blocked: Deployment/shop/db: postgres:16 is missing from the backup",
        "image failed: postgres:16: HTTP 500",
    ]
    assert summary["unprotected"] == ["Deployment/shop/db: postgres:16 is missing from the backup"]


def test_a_stopped_batch_names_its_workloads_and_those_never_attempted():
    attempted = [batch(workload("web")),
                 batch(workload("api"), workload("db"), failed=True, msg="pods of Deployment/shop/api not Ready")]

    lines = migration_summary(attempted, [], discovered("web", "api", "db", "ci", "cache"))["lines"]

    assert lines[2:] == ["batch stopped: api, db: pods of Deployment/shop/api not Ready",
                         "not attempted (an earlier batch failed): Deployment/shop/ci",
                         "not attempted (an earlier batch failed): Deployment/shop/cache"]


def test_check_mode_says_what_would_be_done():
    summary = migration_summary([batch(workload("web"))], [image("nginx:1.27", "copied")], discovered("web"),
                                check_mode=True)

    assert summary["lines"] == ["workloads: 1 (would rewrite 1, unchanged 0, owned 0, blocked 0, failed 0), skipped 0",
                                "images: 1 (would copy 1, present 0, would restore 0, missing 0, failed 0)"]


def test_a_run_that_rewrote_nothing_has_an_empty_summary():
    summary = migration_summary([], [], {"workloads": [], "skipped_workloads": []})

    assert summary == {"lines": ["workloads: 0 (rewritten 0, unchanged 0, owned 0, blocked 0, failed 0), skipped 0",
                                 "images: 0 (copied 0, present 0, restored 0, missing 0, failed 0)"],
                       "unprotected": []}


def test_converged_workloads_count_as_unchanged_and_their_backups_as_the_backup_task_found_them():
    attempted = [batch(workload("new"), images=(image("backup/redis", "restored"),))]
    converged = [workload("web", "unchanged"), workload("db", "unchanged")]
    in_use = [image("backup/nginx"), image("backup/redis", "missing"), image("backup/of-another-cluster")]
    found = discovered("web", "new", "db")
    found["workloads"][0]["images"] = [{"image": "backup/nginx"}]
    found["workloads"][1]["images"] = [{"image": "backup/redis"}]

    summary = migration_summary(attempted, [], found, converged=converged, in_use=in_use)

    assert summary["lines"] == [
        "workloads: 3 (rewritten 1, unchanged 2, owned 0, blocked 0, failed 0), skipped 0",
        # redis as the rewrite restored it, not as the backup task found it lost
        "images: 2 (copied 0, present 1, restored 1, missing 0, failed 0)",
    ]


def test_a_stopped_batch_after_converged_workloads_lists_only_the_workloads_never_attempted():
    attempted = [batch(workload("api"), failed=True, msg="pods of Deployment/shop/api not Ready")]

    lines = migration_summary(attempted, [], discovered("web", "api", "db"),
                              converged=[workload("web", "unchanged")])["lines"]

    assert lines[2:] == ["batch stopped: api: pods of Deployment/shop/api not Ready",
                         "not attempted (an earlier batch failed): Deployment/shop/db"]
