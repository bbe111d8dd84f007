"""workload_images_info's options against their documentation: the pure checks, no lab needed."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import yaml

from ansible_collections.imageclone.backup.plugins.module_utils import factory
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


def test_the_engines_backup_defaults_are_the_modules():
    # BackupOptions.from_mapping falls back to these for any option a caller leaves out (the bench's profiling
    # pass, the engine's tests): a default spelled in both places must not drift, as the copier's could.
    for field in dataclasses.fields(factory.BackupOptions):
        if field.default is not dataclasses.MISSING:
            spec_default = arguments.BACKUP_ARGUMENTS[field.name].get("default")
            engine_default = list(field.default) if isinstance(field.default, tuple) else field.default
            assert engine_default == spec_default, field.name
