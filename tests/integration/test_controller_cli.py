"""The installed ``imgCloneCtrl`` console script: help, version, usage errors (no cluster needed)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.controller_process import BINARY, controller_env

SEED_FLAGS = ("--backupRegistry", "--backupRegistryUser", "--backupRegistryPassword", "--ignoreNamespace",
              "--kubeconfig", "--leaderElectionID", "--leaderElectionNamespace", "--version", "-h")


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), *args], capture_output=True, text=True, env=env or controller_env(),
                          timeout=60)


def test_help_lists_every_seed_flag():
    result = run("-h")
    assert result.returncode == 0
    for flag in SEED_FLAGS:
        assert flag in result.stdout, flag


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("imgCloneCtrl ")


@pytest.mark.parametrize(("args", "message"), [
    (("--nope",), "unrecognized arguments: --nope"),
    ((), "--backupRegistry is required"),
    (("--backupRegistry=r.example/x", "--workers=-1"), "must be at least 1"),
    (("--backupRegistry=r.example/x", "--kinds=Deployment,Gizmo"), "unknown kind 'Gizmo'"),
])
def test_bad_flags_exit_2_with_a_clear_message(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_engine_is_named_clearly(tmp_path):
    if Path("/usr/share/ansible/collections/ansible_collections/imageclone/backup").exists():
        pytest.skip("the collection is installed system-wide on this machine")
    env = controller_env(ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "nowhere"), HOME=str(tmp_path))
    env.pop("PYTHONPATH", None)
    result = subprocess.run([str(BINARY), "--backupRegistry=r.example/x"], capture_output=True, text=True, env=env,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot import the image-clone engine" in result.stderr and str(tmp_path / "nowhere") in result.stderr
