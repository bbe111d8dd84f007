"""ansible-lint's production profile and the molecule scenario, as part of the test suite."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from lab.collection import collections_root

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool_env(lab=None) -> dict[str, str]:
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections_root()),
           "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    if lab is not None:
        env.update(re.findall(r"^export (\w+)='(.*)'$", "\n".join(lab.env_lines()), re.M))
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return env


def test_ansible_lint_production_profile_passes():
    result = subprocess.run([str(BIN / "ansible-lint"), "--offline"], cwd=REPO, capture_output=True, text=True,
                            env=tool_env(), timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_molecule_converges_is_idempotent_and_verifies(lab):
    result = subprocess.run([str(BIN / "molecule"), "test"], cwd=REPO, capture_output=True, text=True,
                            env=tool_env(lab), timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for step in ("converge", "idempotence", "verify"):
        assert re.search(rf"{step}\S*: \S*Executed: Successful", output), f"molecule step {step} did not run"
