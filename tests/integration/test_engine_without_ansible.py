"""The engine is plain Python: it imports and works in a process where ansible-core cannot load."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lab.collection import collections_root

ENGINE = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"

# Runs in a fresh interpreter: any import of the ansible package fails, as if it were not installed.
SCRIPT = r"""
import importlib, json, sys

hidden = sys.argv[4].split(",")

class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ImportError(f"{name} is hidden from this process")
        return None

sys.meta_path.insert(0, Hidden())
prefix = "ansible_collections.imageclone.backup.plugins.module_utils."
for module in filter(None, sys.argv[1].split(",")):
    importlib.import_module(prefix + module)

from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions, backup_service
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference

options = BackupOptions.from_mapping(json.loads(sys.argv[2]))
image = sys.argv[3]
outcome = backup_service(options).ensure_all({image: parse_reference(image)})[image]
print(json.dumps({"state": outcome.state.value, "digest": outcome.digest,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(hidden))}))
"""


def back_up_with_hidden(lab, modules: list[str], hidden: list[str]) -> dict:
    """Import the engine ``modules`` and back up one image in a fresh interpreter where ``hidden`` cannot load."""
    options = {
        "backup_registry": f"{lab.config.backup_registry}/plain-python/backup",
        "backup_authfile": str(lab.backup_authfile),
        "certs_dir": str(lab.certs_dir),
    }
    image = lab.source_image("library/busybox:1.36")
    env = {**os.environ, "PYTHONPATH": str(collections_root())}
    result = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(modules), json.dumps(options), image,
                             ",".join(hidden)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["digest"] == lab.config.seeds["library/busybox:1.36"] and report["loaded"] == []
    assert report["state"] in ("copied", "present")
    return report


def test_engine_runs_with_ansible_hidden(lab):
    back_up_with_hidden(lab, sorted(path.stem for path in ENGINE.glob("*.py")), ["ansible"])


def test_the_backup_path_needs_no_kubernetes_client(lab):
    """image_backup runs where only the registries are reachable: its engine imports work without the client."""
    back_up_with_hidden(lab, [], ["ansible", "kubernetes"])
