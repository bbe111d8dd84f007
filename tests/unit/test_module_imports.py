"""What a module process imports: AnsiballZ compiles every engine module it imports anew in each process,
so the copy machinery stays out of the processes that never copy a first image."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ENGINE = "ansible_collections.imageclone.backup.plugins.module_utils."
COPY_MACHINERY = {"native_copier", "blobs", "manifests", "referrers"}


def engine_modules_imported_by(module: str) -> set[str]:
    probe = (f"import json, sys; import ansible_collections.imageclone.backup.plugins.modules.{module}; "
             f"print(json.dumps([name for name in sys.modules if name.startswith({ENGINE!r})]))")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return {name[len(ENGINE):] for name in json.loads(ran.stdout)}


@pytest.mark.parametrize("module", ["workload_rewrite", "workload_images_info", "image_backup"])
def test_a_module_process_loads_no_copy_machinery_until_it_copies(module):
    assert engine_modules_imported_by(module) & COPY_MACHINERY == set()
