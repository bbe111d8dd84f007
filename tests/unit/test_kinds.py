"""Kinds are data: every per-kind fact is in its description, and deploy/ and the docs agree with them."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.imageclone.backup.plugins.module_utils.kinds import (
    DEFAULT_WATCHED,
    KINDS,
    Kind,
    cluster_role_rules,
)
from imageclone_controller.rbac import cluster_role

REPO = Path(__file__).resolve().parents[2]
# A real API type with a pod spec at its own path, which the engine does not know: the test-only kind.
POD_TEMPLATE = Kind("PodTemplate", "v1", "podtemplates", pod_spec_path=("template", "spec"))


def documented(path: str, variable: str = "DOCUMENTATION") -> dict:
    """The YAML documentation block of a module or doc fragment, read from its source."""
    tree = ast.parse((REPO / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == variable:
            return yaml.safe_load(node.value.value)
    raise AssertionError(f"no {variable} in {path}")


def text(value) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def plural(name: str) -> str:
    return f"{name}s"


def test_deploy_cluster_role_is_the_generated_one_for_the_default_kinds():
    deployed = next(document for document in yaml.safe_load_all((REPO / "deploy/20-clusterrole.yaml").read_text())
                    if document["metadata"]["name"] == "image-clone-controller")
    assert deployed == cluster_role(KINDS[name] for name in DEFAULT_WATCHED)


VERBS = ["get", "list", "watch", "patch"]


def test_generated_rules_cover_a_new_kind_in_its_own_api_group():
    rules = cluster_role_rules([KINDS["Deployment"], POD_TEMPLATE, KINDS["CronJob"], KINDS["StatefulSet"]])
    verbs = ["get", "list", "watch", "patch"]
    assert rules == [
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["podtemplates"], "verbs": verbs},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": verbs},
    ]


def test_a_kind_reads_and_nests_its_pod_spec_at_its_own_path():
    spec = {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    obj = POD_TEMPLATE.at_pod_spec(spec)
    assert obj == {"template": {"spec": spec}}
    assert POD_TEMPLATE.pod_spec(obj) == spec
    assert POD_TEMPLATE.pod_spec({"template": {"spec": "nonsense"}}) is None
    assert KINDS["CronJob"].at_pod_spec(spec)["spec"]["jobTemplate"]["spec"]["template"]["spec"] == spec


def test_the_module_docs_name_every_kind_and_what_each_is_subject_to():
    scope = documented("plugins/doc_fragments/backup.py", "SCOPE")["options"]["kinds"]
    assert scope["choices"] == list(KINDS)
    described = text(scope["description"])
    for kind in KINDS.values():
        assert (plural(kind.name) in described) == kind.skipped_when_owned, kind.name
        if kind.template_immutable:
            assert f"A {kind.name}'s pod template cannot change" in described, kind.name
    listed = text(documented("plugins/modules/workload_images_info.py")["description"])
    assert all(plural(name) in listed for name in KINDS)
    options = documented("plugins/modules/workload_rewrite.py")["options"]
    wait = text(options["wait"]["description"])
    assert [name for name in KINDS if name in wait] == [name for name, kind in KINDS.items() if kind.rollout]
    pull_secret = text(options["pull_secret"]["description"])
    for name, kind in KINDS.items():
        assert (f"{name}'s C(imagePullSecrets) cannot change" in pull_secret) == (not kind.pull_secrets_mutable)


def test_the_controller_docs_name_the_default_kinds_and_the_others():
    guide = (REPO / "docs/controller.md").read_text()
    row = next(line for line in guide.splitlines() if line.startswith("| `--kinds"))
    default, others = row.split("|")[2], row.split("|")[3]
    assert default.strip() == f"`{','.join(DEFAULT_WATCHED)}`"
    assert re.findall(r"`(\w+)`", others) == [name for name in KINDS if name not in DEFAULT_WATCHED]


@pytest.mark.parametrize("kind, obj, pending", [
    ("Deployment", {"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}, "not observed generation 2"),
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 3},
                    "status": {"observedGeneration": 2, "updatedReplicas": 2}}, "2 of 3 pod(s)"),
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 3},
                    "status": {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4}}, "1 old pod(s)"),
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 3},
                    "status": {"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 2}},
     "2 of 3 new pod(s) ready"),
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 3},
                    "status": {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}},
     None),
    ("StatefulSet", {"metadata": {"generation": 5}, "spec": {"replicas": 2},
                     "status": {"observedGeneration": 5, "updatedReplicas": 2, "readyReplicas": 1}},
     "1 of 2 new pod(s) ready"),
    ("StatefulSet", {"metadata": {"generation": 5}, "spec": {"replicas": 0}, "status": {"observedGeneration": 5}},
     None),
    ("StatefulSet", {"metadata": {"generation": 5}, "spec": {}, "status": {"observedGeneration": 5}}, "0 of 1 pod(s)"),
    ("DaemonSet", {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "desiredNumberScheduled": 4,
                                                             "updatedNumberScheduled": 4, "numberAvailable": 4}}, None),
    ("DaemonSet", {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "desiredNumberScheduled": 4,
                                                             "updatedNumberScheduled": 4, "numberAvailable": 3}},
     "3 of 4 new pod(s) ready"),
    ("DaemonSet", {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "desiredNumberScheduled": 4,
                                                             "updatedNumberScheduled": 1}}, "1 of 4 pod(s)"),
])
def test_a_rollout_is_complete_as_kubectl_rollout_status_says(kind, obj, pending):
    why = KINDS[kind].rollout.pending(obj, obj["metadata"]["generation"])
    assert why is None if pending is None else pending in why


def test_an_older_generation_in_the_read_object_does_not_hide_the_written_one():
    stale = {"metadata": {"generation": 1}, "spec": {"replicas": 0}, "status": {"observedGeneration": 1}}
    assert "generation 2" in KINDS["Deployment"].rollout.pending(stale, 2)
