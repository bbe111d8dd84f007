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

class NoAnsible:
    def find_spec(self, name, path=None, target=None):
        if name == "ansible" or name.startswith("ansible."):
            raise ImportError(f"ansible-core is hidden from this process ({name})")
        return None

sys.meta_path.insert(0, NoAnsible())
prefix = "ansible_collections.imageclone.backup.plugins.module_utils."
for module in sys.argv[1].split(","):
    importlib.import_module(prefix + module)

from ansible_collections.imageclone.backup.plugins.module_utils.factory import BackupOptions, backup_service
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference

options = BackupOptions.from_mapping(json.loads(sys.argv[2]))
image = sys.argv[3]
outcome = backup_service(options).ensure_all({image: parse_reference(image)})[image]
print(json.dumps({"state": outcome.state, "digest": outcome.digest,
                  "ansible_loaded": any(m == "ansible" or m.startswith("ansible.") for m in sys.modules)}))
"""


def test_engine_runs_with_ansible_hidden(lab):
    modules = sorted(path.stem for path in ENGINE.glob("*.py"))
    options = {
        "backup_registry": f"{lab.config.backup_registry}/plain-python/backup",
        "backup_authfile": str(lab.backup_authfile),
        "certs_dir": str(lab.certs_dir),
    }
    image = lab.source_image("library/busybox:1.36")
    env = {**os.environ, "PYTHONPATH": str(collections_root())}
    result = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(modules), json.dumps(options), image],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"state": report["state"], "digest": lab.config.seeds["library/busybox:1.36"],
                      "ansible_loaded": False}
    assert report["state"] in ("copied", "present")
