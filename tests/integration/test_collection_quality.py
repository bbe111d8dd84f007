"""The collection as users get it: built, installed offline, documented, and clean under ansible-test sanity."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODULES = ("image_backup", "workload_images_info", "workload_rewrite")
# What ansible-test sanity checks in the installed copy: the collection's own content.
SANITY_TARGETS = ("plugins/", "meta/", "playbooks/", "tests/")
SANITY_BUDGET_SECONDS = 300
# Never part of the artifact: local state, build output, test-only trees.
NOT_SHIPPED = (".ansible", ".venv", ".lab", ".git", "build", "collections", "lab", "tests/unit", "tests/integration",
               "pytest.ini")

# ansible-test bootstraps pip in its sanity virtual environments with a script from
# ci-files.testing.ansible.com; where that host is unreachable it asks for the script at a
# path of its cache. This stand-in installs pip with ensurepip, then the requested pip from
# the package index. ensurepip runs in its own process because it sets PIP_CONFIG_FILE=/dev/null,
# which would hide the site's pip configuration (index, CA bundle) from the install.
PIP_BOOTSTRAP = '''"""Stand-in for ansible-test's get-pip script: ensurepip, then pip installs the rest."""
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
'''
BOOTSTRAP_WANTED = re.compile(r"The bootstrap script can be manually downloaded and saved to: (\S+)")


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    return {**env, "ANSIBLE_NOCOLOR": "1", **extra}


def run(argv: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=environment(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """The collection tarball, built from the checkout by ``ansible-galaxy collection build``."""
    output = tmp_path_factory.mktemp("artifact")
    done = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(output)], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    [tarball] = output.glob("imageclone-backup-*.tar.gz")
    return tarball


@pytest.fixture(scope="module")
def installed(artifact, tmp_path_factory) -> Path:
    """A collections root holding the artifact installed offline (dependencies must already be installed)."""
    root = tmp_path_factory.mktemp("installed")
    done = run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(root),
                str(artifact)], root, ANSIBLE_COLLECTIONS_PATH=str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kubernetes.core" in done.stdout, "the dependency is resolved from what is installed"
    assert (root / "ansible_collections" / "imageclone" / "backup" / "MANIFEST.json").is_file()
    return root


def test_the_artifact_holds_only_the_collection(artifact):
    with tarfile.open(artifact) as tar:
        members = tar.getmembers()
    unwanted = sorted({prefix for member in members for prefix in NOT_SHIPPED
                       if member.name == prefix or member.name.startswith(prefix + "/")})
    links = [member.name for member in members if member.issym() or member.islnk()]
    assert not unwanted, f"add {', '.join(unwanted)} to build_ignore in galaxy.yml"
    assert not links, f"the artifact holds links: {links}"
    names = {member.name for member in members}
    assert {f"plugins/modules/{module}.py" for module in MODULES} <= names


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_each_module_from_the_installed_copy(installed, module):
    name = f"imageclone.backup.{module}"
    as_json = run([str(BIN / "ansible-doc"), "--json", name], installed, ANSIBLE_COLLECTIONS_PATH=str(installed))
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)[name]["doc"]
    assert Path(doc["filename"]).is_relative_to(installed), "rendered from the installed copy, not the checkout"
    assert "backup_registry" in doc["options"] and doc["attributes"]["check_mode"]["support"] == "full"

    text = run([str(BIN / "ansible-doc"), name], installed, ANSIBLE_COLLECTIONS_PATH=str(installed))
    assert text.returncode == 0 and not text.stderr.strip(), text.stderr
    assert "EXAMPLES" in text.stdout and "RETURN VALUES" in text.stdout


def test_ansible_test_sanity_passes_in_the_installed_copy(installed):
    copy = installed / "ansible_collections" / "imageclone" / "backup"
    argv = [str(BIN / "ansible-test"), "sanity", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}",
            "--local", "--color", "no", *SANITY_TARGETS]

    started = time.monotonic()
    done = run(argv, copy, timeout=2 * SANITY_BUDGET_SECONDS)
    wanted = BOOTSTRAP_WANTED.search(done.stdout + done.stderr)
    if wanted and not Path(wanted[1]).exists():
        Path(wanted[1]).parent.mkdir(parents=True, exist_ok=True)
        Path(wanted[1]).write_text(PIP_BOOTSTRAP)
        done = run(argv, copy, timeout=2 * SANITY_BUDGET_SECONDS)
    elapsed = time.monotonic() - started

    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    ran = re.findall(r'Running sanity test "([^"]+)"', report)
    assert {"validate-modules", "pylint", "pep8", "import", "ansible-doc", "yamllint"} <= set(ran), ran
    assert elapsed < SANITY_BUDGET_SECONDS, f"sanity took {elapsed:.0f}s"
