"""Make this checkout importable as ``ansible_collections.imageclone.backup`` for scripts.

Ansible loads the engine from an installed collection; a script run from a
checkout (the demo, benchmarks) gets the same import path through a symlink
under ``build/collections`` pointing at the repository root.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def collections_root() -> Path:
    """A directory that contains ``ansible_collections/imageclone/backup`` -> this checkout."""
    root = REPO / "build" / "collections"
    link = root / "ansible_collections" / "imageclone" / "backup"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO, target_is_directory=True)
    return root


def import_engine() -> None:
    """Put the checkout's collection on ``sys.path`` (idempotent)."""
    root = str(collections_root())
    if root not in sys.path:
        sys.path.insert(0, root)
