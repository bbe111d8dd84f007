"""Shared fixtures: the local lab, a Kubernetes client for it, and a namespace per test."""
from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the lab package lives at the repo root

from lab.lab import Lab  # noqa: E402
from lab.waiting import wait_for  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The running lab: reused when already up, else started here and stopped at the end."""
    instance = Lab()
    already_running = instance.state.exists() and all(
        state.startswith("running") for state in instance.status().values()
    )
    instance.up()
    yield instance
    if not already_running and not os.environ.get("IMAGECLONE_KEEP_LAB"):
        instance.down()


@pytest.fixture
def admin(lab: Lab):
    """The engine's KubeApi as the lab's admin, for setting up and reading back workloads; its writes
    never pass for image-clone's (nor count in the ``writes`` of a client under test)."""
    return lab.admin_api()


@pytest.fixture(scope="session")
def kube(lab: Lab):
    """A kubernetes.client.ApiClient authenticated as the lab's admin."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(lab.kubeconfig))


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube) -> str:
    """A fresh namespace for one test, deleted afterwards; its default service account exists."""
    from kubernetes import client

    core = client.CoreV1Api(kube)
    slug = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    metadata = client.V1ObjectMeta(name=name, labels={"imageclone-test": "true"})
    core.create_namespace(client.V1Namespace(metadata=metadata))
    wait_for(lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
             f"the controller manager to create the default service account in {name}")
    yield name
    core.delete_namespace(name)
