"""workload_images_info's options against their documentation: the pure checks, no lab needed."""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from ansible_collections.imageclone.backup.plugins.module_utils.adapters import arguments
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from ansible_collections.imageclone.backup.plugins.modules import workload_images_info

COLLECTION = Path(workload_images_info.__file__).resolve().parents[2]


def fragment_options(name: str) -> dict:
    """The options a doc fragment documents, from its source (no Ansible loader needed)."""
    module, _, attribute = name.partition(".")
    tree = ast.parse((COLLECTION / "plugins" / "doc_fragments" / f"{module}.py").read_text())
    wanted = (attribute or "documentation").upper()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == wanted:
            return yaml.safe_load(node.value.value)["options"]
    raise AssertionError(f"no {wanted} in doc fragment {module}")


def test_kind_choices_are_the_engines_kinds():
    assert list(arguments.KIND_NAMES) == list(KINDS)
    assert arguments.SCOPE_ARGUMENTS["kinds"]["choices"] == list(KINDS)
    assert fragment_options("backup.scope")["kinds"]["choices"] == list(KINDS)


def test_option_groups_match_their_doc_fragments():
    for group, fragment in ((arguments.CONNECTION_ARGUMENTS, "connection"), (arguments.BACKUP_ARGUMENTS, "backup"),
                            (arguments.SCOPE_ARGUMENTS, "backup.scope")):
        documented = fragment_options(fragment)
        assert set(documented) == set(group), fragment
        for name, spec in group.items():
            assert documented[name]["type"] == spec["type"], name
            assert documented[name].get("aliases", []) == spec.get("aliases", []), name
            assert documented[name].get("default") == spec.get("default"), name
