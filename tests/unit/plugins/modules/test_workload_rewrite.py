"""workload_rewrite's pure parts: the option helpers it relies on (rollout readiness is in test_kinds)."""
from __future__ import annotations

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.adapters import arguments
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS


def test_argument_spec_merges_groups_with_fresh_copies_and_env_fallbacks():
    def fallback():
        pass

    spec = arguments.argument_spec(arguments.BACKUP_ARGUMENTS, env_fallback=fallback, images={"type": "list"})
    assert spec["backup_password"]["fallback"] == (fallback, ["IMAGECLONE_BACKUP_PASSWORD"])
    assert spec["backup_authfile"]["fallback"] == (fallback, ["IMAGECLONE_BACKUP_AUTHFILE"])
    spec["insecure_registries"]["default"].append("mutated")
    assert arguments.BACKUP_ARGUMENTS["insecure_registries"]["default"] == []
    assert "fallback" not in arguments.BACKUP_ARGUMENTS["backup_password"]
    with pytest.raises(ValueError, match="'naming' is defined twice"):
        arguments.argument_spec(arguments.BACKUP_ARGUMENTS, naming={"type": "str"})


def test_scope_narrows_to_the_selected_workloads():
    params = {"namespaces": None, "kinds": None, "ignore_namespaces": ["x"], "skip_gitops": True}
    ids = [("Deployment", "a", "web"), ("StatefulSet", "b", "db"), ("Deployment", "a", "api")]
    # Two kinds in two namespaces: four namespaced LISTs, cheaper than reading every workload of the cluster.
    assert arguments.scope_fields(params, ids) == {
        "kinds": ["Deployment", "StatefulSet"], "namespaces": ("a", "b"), "ignore_namespaces": ("x",),
        "skip_gitops": True, "only": frozenset(ids),
    }
    assert arguments.scope_fields(params, ids[:1])["namespaces"] == ("a",), "one namespace: list just it"
    # More LISTs than NAMESPACED_LISTS_MAX and no namespaces option: one cluster-wide LIST per kind, of which
    # only the selection is read.
    spread = [("Deployment", f"n{index}", "web") for index in range(arguments.NAMESPACED_LISTS_MAX + 1)]
    assert arguments.scope_fields(params, spread)["namespaces"] is None
    assert arguments.scope_fields({**params, "namespaces": ["a", "b", "c"]}, ids)["namespaces"] == ("a", "b")
    limited = arguments.scope_fields({**params, "namespaces": ["b"], "kinds": ["Deployment"]}, ids)
    assert limited["namespaces"] == ("b",) and limited["kinds"] == ["Deployment"]
    assert arguments.scope_fields({**params, "kinds": ["Pod"]}, ids)["namespaces"] == (), "no listed kind in scope"
    assert arguments.scope_fields({**params, "namespaces": ["a", "b"]}, [])["namespaces"] == ()
    assert arguments.scope_fields(params)["namespaces"] is None
    assert arguments.scope_fields(params)["only"] is None, "no selection: every listed workload is read"
    assert arguments.scope_fields(params)["kinds"] == list(KINDS)


def test_workload_ids_refuse_what_is_not_a_mapping():
    with pytest.raises(ValueError, match="workloads entry 2 must be a dictionary"):
        arguments.workload_ids([{"kind": "Pod", "namespace": "a", "name": "p"}, "Pod/a/p"])


def test_workload_ids_keep_order_and_drop_repeats():
    entries = [{"kind": "Pod", "namespace": "a", "name": "p"}, {"kind": "Job", "namespace": "a", "name": "j"},
               {"kind": "Pod", "namespace": "a", "name": "p", "extra": 1}]
    assert arguments.workload_ids(entries) == [("Pod", "a", "p"), ("Job", "a", "j")]
    assert arguments.workload_ids(None) is None
