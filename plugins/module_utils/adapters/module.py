"""The opening every image-clone module shares: its ``AnsibleModule``, a clear failure when a library the
engine needs is missing, and the option checks an argument spec cannot express.

This folder holds the Ansible adapters (argument specs, return values, this
opening); the engine beside it never imports Ansible.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.imageclone.backup.plugins.module_utils.adapters.arguments import (
    BACKUP_ARGUMENTS,
    BACKUP_REQUIRED_BY,
    CONNECTION_ARGUMENTS,
    SCOPE_ARGUMENTS,
    argument_spec,
    name_problems,
    range_problems,
)


def open_module(
    *groups: Mapping[str, Mapping[str, Any]], engine_import_error: str | None, library: str, **own: Any
) -> AnsibleModule:
    """The module for option ``groups`` plus its ``own`` options, failed already when ``engine_import_error``
    (the traceback of importing the engine) says ``library`` is missing, or when an option value is out of
    range or not a name the API server accepts."""
    module = AnsibleModule(argument_spec=argument_spec(*groups, env_fallback=env_fallback, **own),
                           required_by=dict(BACKUP_REQUIRED_BY), supports_check_mode=True)
    if engine_import_error:
        module.fail_json(msg=missing_required_lib(library), exception=engine_import_error)
    problems = range_problems(module.params) + name_problems(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    return module


def open_workload_module(*, engine_import_error: str | None, **own: Any) -> AnsibleModule:
    """``open_module`` for a module that works on the cluster's workloads: connection, scope and backup options."""
    return open_module(CONNECTION_ARGUMENTS, SCOPE_ARGUMENTS, BACKUP_ARGUMENTS,
                       engine_import_error=engine_import_error, library="kubernetes", **own)
