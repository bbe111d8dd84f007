"""The one door to the engine: make ``ansible_collections.imageclone.backup`` importable, then re-export it.

The controller never copies engine logic; it imports the collection's
``plugins/module_utils``. In a container the collection is installed with
``ansible-galaxy collection install``; from a checkout a ``collections`` root
holds ``ansible_collections/imageclone/backup`` (a symlink to the repository).
Where to look, first match wins:

1. already importable (``sys.path``, e.g. ``PYTHONPATH`` or an installed collection);
2. each entry of ``$IMAGECLONE_COLLECTIONS_PATH`` then ``$ANSIBLE_COLLECTIONS_PATH``
   (``os.pathsep``-separated, like Ansible's own variable);
3. ``~/.ansible/collections`` and ``/usr/share/ansible/collections``.

Every other module of this package imports the engine from here.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Final

COLLECTION: Final = "ansible_collections.imageclone.backup"
ENV_VARIABLES: Final = ("IMAGECLONE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATH")
DEFAULT_ROOTS: Final = ("~/.ansible/collections", "/usr/share/ansible/collections")


class EngineNotFound(ImportError):
    """The imageclone.backup collection is nowhere to be found; the message says where it looked."""


def candidate_roots(environ: os._Environ[str] | dict[str, str] | None = None) -> list[Path]:
    """Directories that may contain ``ansible_collections/imageclone/backup``, in search order."""
    environ = os.environ if environ is None else environ
    roots: list[Path] = []
    for variable in ENV_VARIABLES:
        roots += [Path(entry).expanduser() for entry in environ.get(variable, "").split(os.pathsep) if entry]
    roots += [Path(entry).expanduser() for entry in DEFAULT_ROOTS]
    return list(dict.fromkeys(roots))


def _holds_collection(root: Path) -> bool:
    return (root / "ansible_collections" / "imageclone" / "backup" / "plugins" / "module_utils").is_dir()


def ensure_importable(environ: dict[str, str] | None = None) -> None:
    """Make the engine importable or raise ``EngineNotFound`` naming every place searched."""
    try:
        importlib.import_module(f"{COLLECTION}.plugins.module_utils.factory")
        return
    except ImportError:
        pass
    searched = candidate_roots(environ)
    for root in searched:
        if _holds_collection(root):
            sys.path.insert(0, str(root))
            # A namespace package cached from an earlier failed attempt would hide the new path.
            for name in [name for name in sys.modules if name == "ansible_collections"
                         or name.startswith("ansible_collections.")]:
                del sys.modules[name]
            importlib.invalidate_caches()
            importlib.import_module(f"{COLLECTION}.plugins.module_utils.factory")
            return
    places = ", ".join(str(root) for root in searched)
    raise EngineNotFound(
        "cannot import the image-clone engine (the imageclone.backup Ansible collection): "
        f"it is not on sys.path and not under any of: {places}. Install the collection "
        "(ansible-galaxy collection install imageclone-backup-*.tar.gz) or point "
        "IMAGECLONE_COLLECTIONS_PATH at a directory holding ansible_collections/imageclone/backup."
    )


ensure_importable()

# Re-exports: the rest of the controller imports the engine from here only.
from ansible_collections.imageclone.backup.plugins.doc_fragments import backup as backup_doc  # noqa: E402
from ansible_collections.imageclone.backup.plugins.module_utils import (  # noqa: E402
    backup,
    credentials,
    factory,
    kinds,
    kube,
    migration,
    naming,
    plan,
    reference,
    registry,
    rewrite,
    states,
    workloads,
)
from ansible_collections.imageclone.backup.plugins.module_utils.adapters import arguments  # noqa: E402

__all__ = ["EngineNotFound", "arguments", "backup", "backup_doc", "credentials", "factory", "kinds", "kube",
           "migration", "naming", "plan", "reference", "registry", "rewrite", "states", "workloads",
           "ensure_importable", "candidate_roots"]
