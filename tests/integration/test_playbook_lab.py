"""The migration playbook, run by the real ansible-playbook against the lab: one cluster and a fleet."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from builders import JENKINS, POSTGRES, REDIS, manifest, pod_spec
from faults_support import workload_images

from ansible_collections.imageclone.backup.plugins.module_utils.kube import KubeApi
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.collection import collections_root

BIN = Path(sys.executable).parent


def run_playbook(lab, playbook: str, extra: dict, *args: str, inventory: Path | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections_root()), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_STDOUT_CALLBACK": "default", "PATH": f"{BIN}:{os.environ['PATH']}"}
    argv = [str(BIN / "ansible-playbook"), f"imageclone.backup.{playbook}", "-e", json.dumps(extra)]
    if inventory is not None:
        argv += ["-i", str(inventory)]
    result = subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def recap(output: str) -> Counter:
    """Sum of the PLAY RECAP counters over all hosts."""
    totals: Counter = Counter()
    for line in output.split("PLAY RECAP", 1)[1].splitlines():
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            totals[key] += int(value)
    return totals


def variables(lab, namespaces: list[str], repository: str, **more) -> dict:
    return {
        "imageclone_backup_registry": f"{lab.config.backup_registry}/{repository}",
        "imageclone_backup_authfile": str(lab.backup_authfile),
        "imageclone_certs_dir": str(lab.certs_dir),
        "imageclone_kubeconfig": str(lab.kubeconfig),
        "imageclone_namespaces": namespaces,
        "ansible_python_interpreter": sys.executable,
        **more,
    }


def images(api: KubeApi, namespace: str) -> dict[str, list[str]]:
    return workload_images(api, namespace, ("Deployment", "StatefulSet", "CronJob"))


@pytest.fixture
def api(lab) -> KubeApi:
    return lab.admin_api()


def populate(lab, api: KubeApi, namespace: str, broken: bool = True) -> None:
    api.create(KINDS["Deployment"], namespace, manifest("Deployment", "web", pod_spec(lab, "Deployment")))
    api.create(KINDS["StatefulSet"], namespace,
               manifest("StatefulSet", "db", pod_spec(lab, "StatefulSet", main=POSTGRES, side=REDIS)))
    api.create(KINDS["CronJob"], namespace, manifest("CronJob", "ci", pod_spec(lab, "CronJob", main=JENKINS)))
    if broken:
        spec = pod_spec(lab, "Deployment", side="library/redis:gone-upstream")
        api.create(KINDS["Deployment"], namespace, manifest("Deployment", "broken", spec))


@pytest.mark.parametrize("copier", ["skopeo", "native"])
def test_check_mode_then_converge_then_nothing_then_revert(lab, api, namespace, copier):
    populate(lab, api, namespace)
    before = images(api, namespace)
    repository = f"playbook/{uuid.uuid4().hex[:8]}"
    extra = variables(lab, [namespace], repository, imageclone_batch_size=2, imageclone_copier=copier)

    checked = run_playbook(lab, "migrate", extra, "--check", "--diff", check=False)
    assert checked.returncode == 2, "the broken workload would stay unprotected: the run says so by failing"
    assert images(api, namespace) == before, "check mode changed a workload"
    assert all(r.method == "HEAD" for r in lab.registry_requests("registry-backup", repository))
    summary = "workloads: 4 (would rewrite 3, unchanged 0, owned 0, blocked 1, failed 0)"
    assert summary in checked.stdout, checked.stdout[-3000:]

    first = run_playbook(lab, "migrate", extra, check=False)
    assert first.returncode == 2
    after = images(api, namespace)
    for key in ("Deployment/web", "StatefulSet/db", "CronJob/ci"):
        assert all(image.startswith(extra["imageclone_backup_registry"] + ":") and "@sha256:" in image
                   for image in after[key]), (key, after[key])
    assert after["Deployment/broken"] == before["Deployment/broken"]
    assert "gone-upstream" in first.stdout and "blocked" in first.stdout
    assert "workloads: 4 (rewritten 3, unchanged 0, owned 0, blocked 1, failed 0)" in first.stdout

    second = run_playbook(lab, "migrate", extra, check=False)
    assert second.returncode == 2 and recap(second.stdout)["changed"] == 0, second.stdout[-3000:]
    assert images(api, namespace) == after
    # The converged workloads cost no rewrite task: only the blocked one is batched again.
    assert re.findall(r"\(item=([^)]*)\)", second.stdout.split("Rewrite a batch", 1)[1]) == ["broken"]
    assert "workloads: 4 (rewritten 0, unchanged 3, owned 0, blocked 1, failed 0)" in second.stdout
    # Each image as the workloads write it: the backups of the converged ones, the upstream ones of the other.
    counted = re.search(r"images: (\d+) \(copied 0, present (\d+), restored 0, missing 1, failed 0\)", second.stdout)
    assert counted and int(counted.group(2)) == int(counted.group(1)) - 1, second.stdout[-3000:]

    run_playbook(lab, "revert", extra)
    assert images(api, namespace) == before


def test_the_password_never_reaches_the_output(lab, api, namespace, tmp_path):
    populate(lab, api, namespace, broken=False)
    password = lab.backup_password()
    extra = variables(lab, [namespace], f"secret/{uuid.uuid4().hex[:8]}",
                      imageclone_backup_username="imageclone", imageclone_backup_password=password)
    del extra["imageclone_backup_authfile"]
    output = run_playbook(lab, "migrate", extra, "-vvv", "--diff")
    assert "rewritten 3" in output.stdout
    assert password not in output.stdout + output.stderr


def test_a_fleet_copies_shared_images_once(lab, api, kube, namespace):
    from kubernetes import client

    other = f"fleet-b-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(kube).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        populate(lab, api, namespace, broken=False)
        populate(lab, api, other, broken=False)  # the same images in the second "cluster"
        repository = f"fleet/{uuid.uuid4().hex[:8]}"
        shared = variables(lab, [], repository)
        del shared["imageclone_namespaces"]
        inventory = {"all": {"hosts": {
            "cluster-a": {"ansible_connection": "local", "imageclone_namespaces": [namespace]},
            "cluster-b": {"ansible_connection": "local", "imageclone_namespaces": [other]},
        }}}
        inventory_file = Path(lab.state) / f"fleet-{uuid.uuid4().hex[:6]}.yml"
        inventory_file.write_text(yaml.safe_dump(inventory))

        run_playbook(lab, "migrate", {**shared, "imageclone_hosts": "all"}, "--forks", "2", inventory=inventory_file)

        for ns in (namespace, other):
            assert all(image.startswith(shared["imageclone_backup_registry"])
                       for group in images(api, ns).values() for image in group)
        puts = Counter(r.path for r in lab.registry_requests("registry-backup", repository)
                       if r.method == "PUT" and "/manifests/" in r.path)
        assert puts and max(puts.values()) == 1, puts  # every manifest written once for both clusters
    finally:
        client.CoreV1Api(kube).delete_namespace(other)


# Nothing listens on port 1 of the loopback: the registry of this image cannot be reached at all.
UNREACHABLE = "127.0.0.1:1/team/private-app:2.0"


def populate_with_an_unreachable_image(lab, api: KubeApi, namespace: str) -> dict[str, list[str]]:
    """Three good workloads and Deployment "private" whose sidecar cannot be reached; their images before."""
    populate(lab, api, namespace, broken=False)
    spec = pod_spec(lab, "Deployment")
    spec["containers"][1]["image"] = UNREACHABLE
    api.create(KINDS["Deployment"], namespace, manifest("Deployment", "private", spec))
    return images(api, namespace)


def test_one_unreachable_image_blocks_only_its_workload_and_the_run_fails_at_the_end(lab, api, namespace):
    before = populate_with_an_unreachable_image(lab, api, namespace)
    extra = variables(lab, [namespace], f"partial/{uuid.uuid4().hex[:8]}")

    result = run_playbook(lab, "migrate", extra, check=False)

    assert result.returncode == 2, result.stdout[-3000:]
    after = images(api, namespace)
    for key in ("Deployment/web", "StatefulSet/db", "CronJob/ci"):
        assert after[key] != before[key] and all("@sha256:" in image for image in after[key]), key
    assert after["Deployment/private"] == before["Deployment/private"]
    assert "workloads: 4 (rewritten 3, unchanged 0, owned 0, blocked 1, failed 0)" in result.stdout
    blocked = [line for line in result.stdout.splitlines() if line.strip().strip('",').startswith("blocked:")]
    assert len(blocked) == 1 and f"Deployment/{namespace}/private" in blocked[0] and UNREACHABLE in blocked[0]
    assert "1 workload(s) not rewritten, still pulling from upstream" in result.stdout
    assert f"Deployment/{namespace}/private" in result.stdout.split("not rewritten, still pulling")[-1]


def test_stop_on_failure_keeps_stopping_before_any_rewrite(lab, api, namespace):
    before = populate_with_an_unreachable_image(lab, api, namespace)
    extra = variables(lab, [namespace], f"partial/{uuid.uuid4().hex[:8]}", imageclone_stop_on_failure=True)

    result = run_playbook(lab, "migrate", extra, check=False)

    assert result.returncode == 2 and UNREACHABLE in result.stdout, result.stdout[-3000:]
    assert images(api, namespace) == before, "nothing is rewritten when the run stops at the first failure"


def test_a_warm_rerun_asks_the_source_for_referrers_only_and_with_them_off_for_nothing(lab, api, namespace):
    """Workloads pinned to verified backups need nothing from upstream. A warm re-run only looks for
    signatures added since (a tag list per image, at most one probe of the referrers API); with
    ``referrers`` off it sends the source nothing at all: no pull, no HEAD counted against a rate limit."""
    populate(lab, api, namespace, broken=False)
    sources = {image for workload in images(api, namespace).values() for image in workload}
    extra = variables(lab, [namespace], f"warm/{uuid.uuid4().hex[:8]}")
    run_playbook(lab, "migrate", extra)

    def source_requests_during(variables_: dict) -> list:
        mark = len(lab.registry_requests("registry-source"))
        run = run_playbook(lab, "migrate", variables_)
        assert recap(run.stdout)["changed"] == 0, run.stdout[-3000:]
        return lab.registry_requests("registry-source")[mark:]

    assert source_requests_during({**extra, "imageclone_referrers": False}) == []
    looked = source_requests_during(extra)
    tag_lists = [r for r in looked if r.path.endswith("/tags/list") or "/tags/list?" in r.path]
    probes = [r for r in looked if "/referrers/" in r.path]
    assert len(tag_lists) == len(sources) and len(probes) <= 1, looked
    assert all(r.method == "GET" for r in looked) and len(looked) == len(tag_lists) + len(probes), looked
