"""Finding the engine: sys.path first, then the collections paths, in order."""
from __future__ import annotations

from pathlib import Path

from imageclone_controller import engine


def test_search_order(tmp_path):
    roots = engine.candidate_roots({"IMAGECLONE_COLLECTIONS_PATH": f"{tmp_path}/a:{tmp_path}/b",
                                    "ANSIBLE_COLLECTIONS_PATH": f"{tmp_path}/c::{tmp_path}/a"})
    assert roots[:3] == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    assert roots[3:] == [Path("~/.ansible/collections").expanduser(), Path("/usr/share/ansible/collections")]


def test_the_engine_is_re_exported():
    assert engine.workloads.KINDS["Deployment"].plural == "deployments"
    assert callable(engine.factory.backup_service) and callable(engine.migration.Migration)
