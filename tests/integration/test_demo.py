"""The README's first command: the demo runs on the lab and reads well, twice in a row."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_demo() -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "hack" / "demo.py")], capture_output=True, text=True,
                            env=env, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_demo_migrates_then_finds_nothing_to_do_and_the_controller_rewrites_a_new_deployment(lab):
    run_demo()  # the first run may find the namespace in any state; afterwards it is converged
    output = run_demo()
    assert "workloads: 5 (rewritten 0, unchanged 5, owned 0, blocked 0, failed 0)" in output
    assert "WORKLOAD" in output and "daemonset/legacy-agent" in output
    assert "still pulls it from the backup" in output
    assert "Pods after the restart: every image pulled again, from the backup:" in output
    assert "the controller rewrote it after" in output and "(pulled from <backup>/imageclone/backup)" in output
    assert lab.backup_password() not in output
