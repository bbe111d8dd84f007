"""The native copier when the source's connection breaks in the middle of a blob: toxiproxy between
the copier and the lab's source registry resets the connection, stops forwarding after some bytes,
or stalls it, while a large layer streams. The copy fails, the destination tag is never written
(nothing half-written is tagged, no blob is committed from a cut stream), and a re-run completes.
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from faults_support import AccessLog, big_image

from ansible_collections.imageclone.backup.plugins.module_utils.copier import CopyError
from ansible_collections.imageclone.backup.plugins.module_utils.credentials import CredentialStore
from ansible_collections.imageclone.backup.plugins.module_utils.native_copier import NativeCopier
from ansible_collections.imageclone.backup.plugins.module_utils.reference import parse_reference
from ansible_collections.imageclone.backup.plugins.module_utils.registry import RegistryClient
from lab.toxiproxy import Toxiproxy
from lab.waiting import wait_for

# Slow enough that a 16 MB layer is still streaming when the toxic strikes.
BANDWIDTH_KBPS = 4000
CUTS = {
    "reset_peer": {"timeout": 0},  # TCP RST at once
    "limit_data": {"bytes": 256 * 1024},  # closes the connection after 256 KB more
    "timeout": {"timeout": 1500},  # forwards nothing, closes after 1.5 s
}


@pytest.fixture(scope="module")
def toxiproxy(lab):
    proxy = Toxiproxy(lab, "toxiproxy-faults").up()
    yield proxy
    proxy.down()


@pytest.fixture
def source(lab, toxiproxy):
    """The lab's source registry as the copier sees it: through a fresh proxy with a bandwidth limit."""
    name = f"source-{uuid.uuid4().hex[:6]}"
    address = toxiproxy.proxy(name, lab.config.source_registry)
    toxiproxy.add_toxic(name, "bandwidth", {"rate": BANDWIDTH_KBPS})
    return name, address


def native_copier(lab) -> NativeCopier:
    # One retry per request and two tries per blob keep a failing copy short; the toxic stays until removed.
    client = RegistryClient(CredentialStore.from_authfile(lab.backup_authfile), certs_dir=lab.certs_dir,
                            max_retries=1, timeout=5)
    return NativeCopier(client, attempts=2)


def tag_digest(lab, reference: str) -> str | None:
    client = RegistryClient(CredentialStore.from_authfile(lab.backup_authfile), certs_dir=lab.certs_dir)
    found = client.head_manifest(parse_reference(reference))
    return found.digest if found else None


@pytest.mark.parametrize("toxic", sorted(CUTS))
def test_a_blob_transfer_cut_midway_tags_nothing_and_a_rerun_completes(lab, toxiproxy, source, toxic):
    proxy, address = source
    image = big_image(lab, "faults/cut")
    path = image.split("/", 1)[1]
    repository = f"faults/cut/{uuid.uuid4().hex[:10]}"
    destination = f"{lab.config.backup_registry}/{repository}:v1"
    credentials = CredentialStore.from_authfile(lab.backup_authfile)
    log = AccessLog(lab)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(native_copier(lab).copy, parse_reference(f"{address}/{path}"),
                              parse_reference(destination), credentials)
        # The backup opened an upload for a blob streaming from the source: cut the source now.
        wait_for(lambda: log.count(repository, "POST", "/blobs/uploads/") >= 2, "a blob upload to start",
                 interval=0.01)
        toxiproxy.add_toxic(proxy, toxic, CUTS[toxic])
        with pytest.raises(CopyError) as failure:
            running.result(timeout=120)
    assert address in str(failure.value) and "CA" not in str(failure.value), failure.value  # the source's outage
    assert tag_digest(lab, destination) is None
    assert log.manifests_written(repository) == 0

    toxiproxy.remove_toxic(proxy, f"{toxic}_downstream")
    native_copier(lab).copy(parse_reference(f"{address}/{path}"), parse_reference(destination), credentials)
    assert tag_digest(lab, destination) == tag_digest(lab, image)


def test_cancel_cuts_the_transfers_running_now_and_refuses_new_copies_until_resume(lab, toxiproxy, source):
    _proxy, address = source
    image = big_image(lab, "faults/cancel")
    path = image.split("/", 1)[1]
    repository = f"faults/cancel/{uuid.uuid4().hex[:10]}"
    destination = parse_reference(f"{lab.config.backup_registry}/{repository}:v1")
    credentials = CredentialStore.from_authfile(lab.backup_authfile)
    copier = native_copier(lab)
    log = AccessLog(lab)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(copier.copy, parse_reference(f"{address}/{path}"), destination, credentials)
        wait_for(lambda: log.count(repository, "POST", "/blobs/uploads/") >= 2, "a blob upload to start",
                 interval=0.01)
        started = time.monotonic()
        assert copier.cancel() == 1
        with pytest.raises(CopyError, match="cancelled"):
            running.result(timeout=60)
        assert time.monotonic() - started < 5  # cut, not waited out (the layers need seconds at this rate)
    with pytest.raises(CopyError, match="cancelled"):
        copier.copy(parse_reference(f"{address}/{path}"), destination, credentials)
    assert tag_digest(lab, str(destination)) is None and log.manifests_written(repository) == 0

    copier.resume()
    copier.copy(parse_reference(f"{address}/{path}"), destination, credentials)
    assert tag_digest(lab, str(destination)) == tag_digest(lab, image)
