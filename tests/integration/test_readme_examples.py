"""The README's playbooks run as written, with only the lab's addresses and paths put in."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from builders import manifest, pod_spec

from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS
from lab.collection import collections_root
from lab.node import node_pod_spec

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_playbooks() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return [block for block in blocks if "imageclone" in block]


def run(lab, playbook: str, tmp_path: Path, *extra: str) -> str:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}.yml"
    path.write_text(playbook)
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collections_root()), "KUBECONFIG": str(lab.kubeconfig),
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             "-e", f"ansible_python_interpreter={sys.executable}", str(path), *extra],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def rewritten(lab, namespace: str, repository: str) -> bool:
    api = lab.admin_api()
    obj = api.get(KINDS["Deployment"], namespace, "web")
    return all(c["image"].startswith(repository + ":") for c in obj["spec"]["template"]["spec"]["containers"])


def create_web(lab, namespace: str, runs: bool = False) -> None:
    """Deployment ``web``; with ``runs``, its pod really runs on the lab's node (a busybox image)."""
    api = lab.admin_api()
    spec = (node_pod_spec([{"name": "main", "image": lab.source_image("runnable/sleeper:1.0")}]) if runs
            else pod_spec(lab, "Deployment"))
    api.create(KINDS["Deployment"], namespace, manifest("Deployment", "web", spec))


def test_the_minimal_playbook_runs(lab, namespace, tmp_path):
    create_web(lab, namespace, runs=True)  # the playbook waits for its new pod to be Ready
    repository = f"{lab.config.backup_registry}/readme/{uuid.uuid4().hex[:8]}"
    secrets = tmp_path / "vault.json"  # stands in for a vault file: the password stays off argv
    secrets.write_text(json.dumps({"vault_backup_password": lab.backup_password()}))
    overrides = {"imageclone_backup_registry": repository, "imageclone_backup_username": "imageclone",
                 "imageclone_kubeconfig": str(lab.kubeconfig), "imageclone_certs_dir": str(lab.certs_dir),
                 "imageclone_namespaces": [namespace], "imageclone_wait_timeout": 120}
    output = run(lab, readme_playbooks()[0], tmp_path, "-e", f"@{secrets}", "-e", json.dumps(overrides))
    assert "rewritten 1" in output
    assert rewritten(lab, namespace, repository)


def test_the_task_by_task_playbook_runs(lab, namespace, tmp_path):
    create_web(lab, namespace)
    repository = f"{lab.config.backup_registry}/readme/{uuid.uuid4().hex[:8]}"
    playbook = (readme_playbooks()[1]
                .replace("backup.example.com/platform/images", repository)
                .replace("/etc/image-clone/auth.json", str(lab.backup_authfile))
                .replace("/etc/image-clone/certs.d", str(lab.certs_dir))
                .replace("[shop]", f"[{namespace}]"))
    run(lab, playbook, tmp_path)
    assert rewritten(lab, namespace, repository)
