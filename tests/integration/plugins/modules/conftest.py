"""Run image-clone's modules in-process the ansible-core 2.19 way, against the running lab."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # builders.py


@dataclass
class ModuleRun:
    """What one ``main()`` printed and how it exited."""

    result: dict[str, Any]
    output: str
    exit_code: int

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))


@pytest.fixture
def run_module(capsys):
    """``run_module(module, args)``: call ``module.main()`` with ``args``; the ``ModuleRun``.

    ``args`` may hold Ansible's internal parameters, such as ``_ansible_check_mode``.
    """

    def run(module, args: dict[str, Any]) -> ModuleRun:
        capsys.readouterr()
        with patch_module_args(args), pytest.raises(SystemExit) as exited:
            module.main()
        output = capsys.readouterr().out
        return ModuleRun(json.loads(output), output, exited.value.code or 0)

    return run


@pytest.fixture
def backup_args(lab) -> dict[str, Any]:
    """Backup options for the lab, into a repository of this test's own."""
    return lab.backup_options("unit")


@pytest.fixture
def connection_args(lab) -> dict[str, Any]:
    return {"kubeconfig": str(lab.kubeconfig)}


@pytest.fixture
def create(lab, admin, namespace):
    """``create(kind, name, main=..., side=..., init=..., **spec_fields)``: a workload in this test's namespace."""
    from builders import BUSYBOX, NGINX, REDIS, manifest, pod_spec

    from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS

    def make(kind: str, name: str, main: str = NGINX, side: str = REDIS, init: str = BUSYBOX, **spec_fields):
        body = manifest(kind, name, pod_spec(lab, kind, main=main, side=side, init=init))
        body["spec"].update(spec_fields)
        return admin.create(KINDS[kind], namespace, body)

    return make


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch):
    """Options come from each test only: no IMAGECLONE_* or K8S_AUTH_* variable of the caller's shell."""
    for name in list(os.environ):
        if name.startswith(("IMAGECLONE_BACKUP_", "K8S_AUTH_")):
            monkeypatch.delenv(name)
